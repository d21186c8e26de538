"""Inference speed: ``rtseg bench``, one protocol for every model.

Protocol (the same for every model, so the numbers compare):

* ``create_model(name, K, aux=False)`` in eval mode, run under ``torch.inference_mode()`` on a
  random ``batch``×3×H×W input; the output is B×K×H×W logits, i.e. the final upsampling to the
  input size is always included (the models do it). ``argmax=True`` adds the B×H×W label map.
* Optional, and then for every model alike: BatchNorm folded into the preceding convolutions
  (:func:`rtseg.deploy.fuse.fold_batchnorm`), autocast to fp16/bf16, channels-last memory
  format, ``torch.compile``.
* ``warmup`` untimed calls (at least one: allocation, cuDNN autotuning and compilation happen
  there), then ``iters`` timed calls. Each call is timed with ``time.perf_counter`` around the
  forward pass followed, on CUDA, by ``torch.cuda.synchronize()``, so every time is the full
  latency of one batch. Reported: median, 10th and 90th percentile latency, FPS =
  batch / median, parameters, GMAC per image (:func:`rtseg.complexity.count_macs`: convolutions
  and matrix/attention products), achieved GFLOP/s = 2·MAC·batch / median, and that as a
  percentage of a plain fp32 matrix product timed on the same device in the same run.
* ``compare=True`` times several models in one run, interleaved: after every model's warm-up,
  round r times one call of each model in turn (starting at model r mod n), so that slow
  drifts of the machine (other jobs, clocks, temperature) hit all models alike. The same
  protocol times any callables against each other: :func:`time_interleaved`.

Peak memory (``peak_mem_mb``) is what one forward pass needs on its own: the model's weights and
buffers, the input, and the largest extra memory during one call. On CUDA the extra is
``torch.cuda.max_memory_allocated`` minus the memory allocated before the call (exact for the
caching allocator's tensors; cuDNN/cuBLAS workspaces outside it are not counted). On CPU there
is no allocator statistic; the extra is the rise of the process's peak resident set size over
one call, after freeing the C heap (``malloc_trim``) and resetting the peak through
``/proc/self/clear_refs`` (Linux). That figure is approximate (it also sees allocator caching,
and library buffers touched for the first time); where the reset is not possible it is
reported as ``None`` ("n/a") rather than guessed.

Layout: :mod:`.runner` (the entry points), :mod:`.settings` (:class:`BenchSettings`, what a run
times and how, checked once), :mod:`.cases` (what is timed), :mod:`.timing`
(warm-up, timed calls, statistics, the matmul reference), :mod:`.report` (settings and the
text table); peak memory comes from :mod:`rtseg.inference.peak_memory`. The command line is
:mod:`rtseg.cli.bench`.
"""

from .cases import ATTENTIONS, MODULES
from .report import describe_settings, format_report
from .runner import benchmark, run_benchmark
from .settings import BenchSettings
from .timing import matmul_reference, time_interleaved

__all__ = [
    "ATTENTIONS",
    "BenchSettings",
    "MODULES",
    "benchmark",
    "describe_settings",
    "format_report",
    "matmul_reference",
    "run_benchmark",
    "time_interleaved",
]
