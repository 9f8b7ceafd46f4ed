"""Lazy imports for the code location: every run process imports it, and most runs never touch MLflow.

`lazy_module("learning_pipeline.lib.learning.cycle")` returns the module object at once and executes it on first
attribute access (the standard library's importlib.util.LazyLoader recipe), so a landing run does not pay
for importing MLflow and scikit-learn before its first step.
"""

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
