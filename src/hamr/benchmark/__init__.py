"""`hamr bench` and bench/models.py: hamr beside peer runtimes on the same model, inputs and thread count."""

from hamr.benchmark.bench import bench_model, interleaved, target_for

__all__ = ["bench_model", "interleaved", "target_for"]
