"""Applications built on the pipeline: the demo and the live demo, held-out evaluation, the
benchmark, predicting detector files, the IPython profile's `Beamline`, and their figures."""
