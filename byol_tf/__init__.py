def __getattr__(name): return getattr(__import__("byol_tf.encoder").encoder if name == "load_encoder" else __import__("types").ModuleType(__name__), name)
