"""What the native programs on devices with their own memory (OpenCL, GPUs) share: their tensors' answers, the
weights uploaded once per program, warming up, and telling their values from the host's."""

from __future__ import annotations

import numpy as np


class DeviceValue:
    """A mixin for a device tensor with `shape`, `dtype` and the program that owns it (`owner`)."""

    shape: tuple
    dtype: np.dtype
    owner: object

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def numpy(self) -> np.ndarray:
        return self.owner.to_host(self)


class DeviceMemory:
    """A mixin for a NativeProgram whose device has its own memory. It supplies `upload(array)` (a device buffer
    holding a copy), `finish()` (waits for the device's queue) and `value_type` (its DeviceValue class)."""

    value_type: type

    def upload(self, array: np.ndarray):
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def weight_buffer(self, name: str):
        """The weight `name` on the device, uploaded the first time it is asked for."""
        with self._lock:
            if name not in self._weights:
                self._weights[name] = self.upload(self.weights[name])
            return self._weights[name]

    def warm(self) -> None:
        for segment in self.lowered.all_segments:
            for name in segment.slots:
                if name in self.lowered.weights and name in self.weights:
                    self.weight_buffer(name)
        self.finish()

    def is_device_value(self, value) -> bool:
        return isinstance(value, self.value_type)
