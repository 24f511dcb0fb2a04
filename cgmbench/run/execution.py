"""How a run executes, as opposed to what it computes: the generator's micro-batch and the CPU threads.

**Micro-batch.** A model that runs a ``generate`` batch through its networks in chunks declares ``micro_batch``
(:mod:`cgmbench.generator`). The run sets it (:func:`choose_micro_batch`):

* ``RunConfig.micro_batch`` when given: ``cgmbench run --batch-size B`` gives ``B`` (the micro-batch *is* the batch
  size the user asked for);
* otherwise on a GPU: the batch size, halved whenever a network pass runs out of GPU memory
  (:func:`generate_with_memory_fallback`), so the largest chunk that fits the free memory is used;
* otherwise (CPU): 1. CPU matmul and convolution kernels round differently for different row counts, so one sample
  per pass keeps every sample bit-identical whatever batch it arrives in (``samples_sha256`` independent of
  ``--batch-size``); a larger micro-batch is faster and may change samples in their last bits.

The micro-batch in use is recorded in ``run.json`` (``environment.micro_batch``; ``null`` for models that sample
their whole batch at once). A change of samples shows in ``samples_sha256`` and so in the run's identity.

**Threads**: :mod:`cgmbench.threads` (``--threads``; ``environment.threads``).
"""

from __future__ import annotations

from cgmbench.errors import CgmbenchError


def chunks_samples(model) -> bool:
    """Whether ``model`` declares a ``micro_batch`` (see :mod:`cgmbench.generator`)."""
    return hasattr(model, "micro_batch")


def choose_micro_batch(model, batch_size: int, micro_batch: int | None, device: str) -> int | None:
    """Set and return ``model.micro_batch`` (module docstring); None for a model without one."""
    if not chunks_samples(model):
        return None
    if micro_batch is not None:
        if micro_batch < 1:
            raise CgmbenchError(f"the micro-batch must be >= 1, got {micro_batch}")
        chosen = int(micro_batch)
    elif str(device).startswith("cuda"):
        chosen = int(batch_size)
    else:
        chosen = 1
    model.micro_batch = chosen
    return chosen


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(error, oom)) or "CUDA out of memory" in str(error)


def generate_with_memory_fallback(model, conditions, seeds, knobs, log=None):
    """``model.generate``; on a GPU out-of-memory error the micro-batch is halved and the batch generated again
    (samples depend only on their seeds), down to 1, after which the error stands."""
    while True:
        try:
            return model.generate(conditions, seeds, **knobs)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is handled; anything else re-raised
            current = getattr(model, "micro_batch", None)
            if not _is_out_of_memory(error) or not chunks_samples(model) or (current is not None and current <= 1):
                raise
            import torch

            torch.cuda.empty_cache()
            model.micro_batch = max(1, (current or len(seeds)) // 2)
            if log is not None:
                log(f"cgmbench: GPU out of memory at micro-batch {current or len(seeds)}; "
                    f"continuing with {model.micro_batch}")
