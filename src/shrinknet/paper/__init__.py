"""The paper's application: data sets, training, experiments, report, demo and plots (``pip install shrinknet[paper]``)."""
