"""A small analysis base class in MDAnalysis' habit, over egraff-lmp trajectories.

Subclasses implement ``_prepare()``, ``_single_frame(frame)`` and ``_conclude()``; users call
``Analysis(trajectory, ...).run(start, stop, step)`` and read ``.results``. The per-frame
work only adds into accumulators, so a frame range can be split and the parts summed.
"""

from __future__ import annotations

from ..errors import EgraffError
from ..trajectory import Trajectory


class Results(dict):
    """A dict whose keys are also attributes (like MDAnalysis' ``Results``)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value


class AnalysisBase:
    def __init__(self, trajectory: Trajectory, verbose: bool = False):
        self._trajectory = trajectory
        self._verbose = verbose
        self.results = Results()

    def _prepare(self):
        pass

    def _single_frame(self, frame):
        raise NotImplementedError

    def _conclude(self):
        pass

    def run(self, start=None, stop=None, step=None, verbose=None):
        """Analyse frames ``start:stop:step`` (Python slice semantics); returns ``self``."""
        traj = self._trajectory
        self.frame_indices = traj.frame_range(start, stop, step)
        self.n_frames = len(self.frame_indices)
        if self.n_frames == 0:
            raise EgraffError(f"{traj.path}: no frames selected (the file has {traj.n_frames}; "
                              f"start={start}, stop={stop}, step={step})")
        verbose = self._verbose if verbose is None else verbose
        frames = traj.frames(start, stop, step)
        if verbose:
            from tqdm.auto import tqdm

            frames = tqdm(frames, total=self.n_frames, desc=type(self).__name__, unit="frame")
        self._prepare()
        for frame in frames:
            self._single_frame(frame)
        self._conclude()
        return self
