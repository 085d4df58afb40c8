"""The offline report: one self-contained HTML page (figures embedded) built from stage outputs.

`page.context` gathers the stages' outputs through the layout; `page.render` fills the Jinja2
template `templates/report.html.j2`.
"""
