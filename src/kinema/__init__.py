"""kinema: open text-to-video. A diffusion transformer over spacetime patches of a causal video VAE latent.

import kinema
pipe = kinema.Pipeline.from_pretrained()
pipe("a red circle falls and bounces", seconds=2, size=(64, 64), seed=0).save("out.mp4")
"""

from kinema.client import Client, KinemaAPIError
from kinema.pipeline import KinemaError, Pipeline, Video, generate

__all__ = ["Client", "KinemaAPIError", "KinemaError", "Pipeline", "Video", "generate"]
__version__ = "0.1.0"
