"""oiplab: do two trainings of the same small CNN learn the same filters, in the same order?"""

__version__ = "0.1.0"
