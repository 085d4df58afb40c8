"""The offline report: one self-contained HTML page (figures embedded) built from stage outputs."""
