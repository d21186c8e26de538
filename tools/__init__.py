"""Build and profiling tools (not part of the installed package), run from the repository root.

* ``python -m tools.make_configs``: writes ``configs/{dataset}/{model}.yaml`` from its recipe
  tables (``tests/test_configs.py`` checks the committed files equal its output).
* ``python -m tools.profile_onnx``: milliseconds per operator type of ONNX files in ONNX
  Runtime and OpenVINO.
* ``python -m tools.profile_upsamplers``: the ``torch.profiler`` operator profile of each
  ``fpn_r18_<up>``, plain formulas against the inference fast paths.
* ``python -m tools.int8_bisect``: which convolutions make an int8 file go wrong in a runtime.

Finished experiments live in :mod:`studies`.
"""
