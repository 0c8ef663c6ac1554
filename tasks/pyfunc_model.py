"""The registered model's code, logged as a file ("models from code"), not as a pickled object.

MLflow runs this file when it loads a version (`mlflow.pyfunc.load_model`, `mlflow models serve`),
with our packages on the path from the model's code_paths. Nothing else imports it.
"""

import mlflow.models

from tasks.pyfunc import ForecasterModel

mlflow.models.set_model(ForecasterModel())
