"""Quality AI at the edge: model fitting and files (models), the training process (trainer) and
the collect-side service that feeds it and loads its versions (service). docs/quality.md."""
