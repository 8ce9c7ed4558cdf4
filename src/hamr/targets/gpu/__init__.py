"""What the GPU targets (cuda, rocm) share: building per architecture, launch metadata, the device program."""
