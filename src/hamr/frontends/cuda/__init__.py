"""CUDA C kernels into hamr kernel C (`hamr convert kernel.cu -o kernel.hk`), parsed with libclang."""

from hamr.frontends.cuda.convert import Conversion, convert, convert_file, read_hk
from hamr.frontends.cuda.report import Construct, Rate

__all__ = ["Construct", "Conversion", "Rate", "convert", "convert_file", "read_hk"]
