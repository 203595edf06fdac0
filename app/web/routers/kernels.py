"""GET /api/v1/kernels: the preset kernels a conv layer can start from (its `init`)."""

from __future__ import annotations

from fastapi import APIRouter

from app.cnn.kernels import PRESET_KERNELS
from app.schemas import KernelInfo, KernelsResponse

kernels_router = APIRouter(tags=["kernels"])


def kernel_label(name: str) -> str:
    """A preset's name for people: "sobel_x" -> "Sobel x", "blur" -> "Blur"."""
    return name.replace("_", " ").capitalize()


# The presets never change while the server runs: one reply, made once.
_KERNELS = KernelsResponse(
    kernels=[
        KernelInfo(name=name, label=kernel_label(name), size=len(values), values=values.tolist())
        for name, values in PRESET_KERNELS.items()
    ]
)


@kernels_router.get("/kernels", response_model=KernelsResponse)
async def list_kernels() -> KernelsResponse:
    """Every preset kernel: give its name as a conv layer's `init` (with kernel_size = size)."""
    return _KERNELS
