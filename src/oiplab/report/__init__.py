"""The offline report: one self-contained HTML page (figures embedded) built from stage outputs.

`page.context` loads each stage's typed result and builds the sections; `tables` holds every
table's columns (header beside cell); `html.render` fills the Jinja2 template
`templates/report.html.j2`, which holds only layout.
"""
