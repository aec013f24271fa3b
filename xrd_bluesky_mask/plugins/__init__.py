"""Where users already work: a Dioptas mask plugin (`dioptas_plugin`, the ``dioptas`` extra) and
a Prefect end-of-run flow (`prefect_flow`, the ``prefect`` extra).

Nothing here is imported by the rest of the package; each module imports its tool at the top,
so it is loaded only by that tool (Dioptas' plugin discovery) or by whoever asks for it.
"""
