"""BYOL networks: ResNet encoders (`resnet`, `blocks`), MLP heads (`heads`), layers (`layers`).

Import the submodules directly, e.g. `from byol_tf.models import resnet` and
`resnet.resnet(depth=50)`; nothing is re-exported here so that the function
`resnet.resnet` never shadows the module `byol_tf.models.resnet`.
"""
