"""egraff-lmp: equivariant GNN force fields in production LAMMPS MD, judged against
ab-initio references with the EGraFFBench metrics.

Units everywhere: eV, Å, fs, K, amu (LAMMPS ``units metal``).
"""

__version__ = "0.1.0"

from .errors import EgraffError  # noqa: E402
from .io import read_trajectory  # noqa: E402
from .trajectory import Frame, Trajectory  # noqa: E402


def __getattr__(name):
    # DeployedCalculator pulls in torch: import it only when asked for
    if name == "DeployedCalculator":
        from .calculator import DeployedCalculator

        return DeployedCalculator
    raise AttributeError(name)


__all__ = ["DeployedCalculator", "EgraffError", "Frame", "Trajectory", "read_trajectory",
           "__version__"]
