"""Matching maps across independently trained networks (pure NumPy/SciPy; no files, no plots).

Unit matching by activation correlation follows Li et al., "Convergent Learning" (ICLR 2016);
whole-layer similarity is linear CKA (Kornblith et al., ICML 2019); weight matching and the
interpolation check follow Ainsworth et al., "Git Re-Basin" (ICLR 2023).
"""
