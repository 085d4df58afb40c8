"""OIPs (the articles' "original input patterns"): inputs found by gradient ascent that drive a map.

Split as feature-visualization code usually is: `init` (how start images are made), `objectives`
(what is maximized, per batch element), `step` (the one backend-specific piece: a compiled ascent
step), `engine` (the batched loop, returning arrays), and rendering in `oiplab.render.oip`.
"""
