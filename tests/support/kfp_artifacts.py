"""Stand-ins for the KFP artifacts a component body receives, for tests that call it through ``python_func``."""


class Art:
    """A KFP artifact as a component body sees it: a path, metadata, and the metric calls it records."""

    def __init__(self, path):
        self.path, self.metadata, self.logged = str(path), {}, {}

    def log_metric(self, name, value):
        self.logged[name] = value

    def log_roc_curve(self, fpr, tpr, threshold):
        self.logged["roc"] = (fpr, tpr, threshold)

    def log_confusion_matrix(self, categories, matrix):
        self.logged["confusion"] = (categories, matrix)
