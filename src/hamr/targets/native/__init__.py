"""Shared machinery of the native targets (cpu, opencl): op lowerings, fusion, plans."""
