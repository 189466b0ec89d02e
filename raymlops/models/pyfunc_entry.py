"""The image pyfunc as MLflow "models from code": MLflow copies this file into the logged model and runs it on
load, so the model's Python object is built from raymlops' installed code instead of being unpickled."""

from mlflow.models import set_model

from raymlops.models.image_classifier import ImageClassifier

set_model(ImageClassifier())
