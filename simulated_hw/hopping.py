"""Hopping-conduction model of a dopant network: the default physics of the simulated DNPU.

Physics
-------
The device is a disc of radius ``R`` (``device_radius_m``) holding ``n_sites`` acceptor sites at
uniformly random positions. Eight point electrodes sit evenly on the perimeter (45° apart; which
electrode sits where is ``electrode_slots``): electrodes 0..6 are the voltage electrodes (the model
inputs, V) and electrode 7 is the output, held at virtual ground (0 V). By default the data inputs
0 and 6 sit across the disc from the output. Each site stands for a small cluster of dopants (a
coarse-grained network), so the localisation length ``a`` is a sizeable fraction of the device
(default ``R / 3``).

Site energies, in units of kT and measured from the Fermi level::

    eps_i(V) = eps0_i + sum_k gamma_ik V_k        (k over the 7 voltage electrodes)

``eps0_i`` is a random disorder energy (normal, mean ``energy_offset_kt``, standard deviation
``disorder_std_kt``). The gating coefficients ``gamma_ik`` (kT/V) describe the electrostatic shift
of site i by electrode k: they decay with distance as ``w_ik = (d_ik + s) ** -p`` (``s`` =
``gating_softening_m``, ``p`` = ``gating_decay_exponent``) and are normalised so that the weights
of all 8 electrodes (the grounded output included) add up to ``gating_kt_per_v`` for every site.
The default, 12 kT/V in total (about 80 meV/V at 77 K, i.e. some 8 % of an electrode's voltage
reaches a site's energy), gives a site next to an electrode up to ~7 kT/V from that electrode.
Weaker gating (4 kT/V) leaves the device close to a linear resistor network: AND and OR remain
easy, but the best XOR/XNOR separations shrink to a few per cent of the typical current and about
half of the devices cannot realise every gate. With the defaults, every one of the first 30 seeds
realises all six two-input gates (inputs on electrodes 0 and 6, controls 1..5), and the median
|I| over random in-range voltages is a few to a few tens of nA (about 30 nA for seed 0).

Transport is the linear-response Miller–Abrahams resistor network (Ambegaokar–Halperin–Langer),
made smooth in the energies. Between sites i and j (distance ``r_ij``) the conductance is::

    G_ij = G0 exp(-2 r_ij / a) f_i (1 - f_j) x / (e^x - 1),   x = eps_j - eps_i,
         = G0 exp(-2 r_ij / a) q_i q_j phi((eps_j - eps_i) / 2)

with the Fermi occupation ``f = 1 / (1 + e^eps)``, ``q = 1 / (2 cosh(eps / 2))`` and
``phi(y) = y / sinh(y)``. This detailed-balance form is symmetric in i and j and analytic in the
energies (the textbook ``exp(-|dE| / kT)`` form has kinks); a site contributes most when its energy
is within a few kT of the Fermi level. Between site i and electrode k (distance ``d_ik``) the
electrode is treated as a level at the Fermi energy::

    G_ik = G0 exp(-2 d_ik / a) q_i q(0) phi(eps_i / 2),   q(0) = 1/2.

Only pairs (site–site and site–electrode) closer than ``cutoff_localisation_lengths * a`` are
kept; every site is within ``R`` of some electrode, so with a cutoff of at least ``R`` every site
is connected and the network equations are non-singular.

Kirchhoff's current law at every site, with the electrode potentials fixed at their voltages
(output at 0 V), gives ``L u = b``: ``L`` is the weighted graph Laplacian restricted to the sites
(electrode conductances on its diagonal), ``b_i = sum_k G_ik V_k`` and ``u`` the site potentials
(V). The output current (A, positive when current flows from the network into electrode 7) is
``I = sum_i G_i7 u_i``. Because the voltages both drive the network and gate the site energies,
``I(V)`` is smooth, nonlinear and, for suitable controls, non-monotonic in any one input.

The exact gradient dI/dV is computed by the adjoint method: with ``L lam = g_out``
(``g_out_i = G_i7``; ``lam`` are the site potentials with the output at 1 V and all other
electrodes at 0 V), ``dI/dG_e = -(Lam_a - Lam_b)(U_a - U_b)`` for an edge e = (a, b), and
``dI/dV_k = sum_i (dI/deps_i) gamma_ik + sum_i lam_i G_ik``.

Units: distances m, voltages V, conductances S, currents A, energies in kT (at 77 K,
kT = 6.6 meV; the model only ever uses energies divided by kT, so the temperature itself does not
appear). A realisation (site positions, disorder energies) is fixed by ``seed``.

Larger devices: ``n_voltage_electrodes`` (default 7) sets the number of voltage electrodes; the
output is always the last electrode (index ``n_voltage_electrodes``), and ``electrode_slots`` then
lists ``n_voltage_electrodes + 1`` slots spread evenly on the perimeter.
:meth:`HoppingParameters.scaled` builds such a device for scaling studies (e.g. 12, 22 or 42
voltage electrodes), keeping the default device's electrode spacing and dimensionless physics.

Numerics are compiled with numba (serial, no fastmath), so results are bit-for-bit reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from simulated_hw.models import FloatArray

__all__ = ["HoppingNetworkModel", "HoppingParameters", "default_electrode_slots"]

N_VOLTAGE_ELECTRODES = 7
"""Number of voltage electrodes (model inputs) of the default device."""
N_ELECTRODES_TOTAL = 8
"""Voltage electrodes plus the grounded output electrode (index 7) of the default device."""
OUTPUT_ELECTRODE = 7
"""Index of the grounded output electrode on the perimeter of the default device."""

_SERIES_LIMIT = 0.05
"""Below this |y|, phi(y) = y/sinh(y) and its log-derivative use their Taylor series."""


@dataclass(frozen=True)
class HoppingParameters:
    """Physical parameters of :class:`HoppingNetworkModel` (defaults give a gate-capable device).

    Attributes:
        n_sites: Number of (coarse-grained) acceptor sites in the disc. Evaluation cost grows
            roughly as ``n_sites**3``.
        device_radius_m: Radius R of the active disc (m); the electrodes sit on its perimeter.
        localisation_length_m: Localisation length a (m) in the tunnelling factor exp(-2 r / a).
        cutoff_localisation_lengths: Pairs farther apart than this many localisation lengths are
            dropped. Must make the cutoff at least ``device_radius_m`` so every site reaches an
            electrode.
        min_site_spacing_m: Minimum distance (m) between two sites and between a site and an
            electrode when placing sites (rejection sampling); avoids near-duplicate sites.
        disorder_std_kt: Standard deviation of the random site energies (units of kT).
        energy_offset_kt: Mean site energy relative to the Fermi level (units of kT).
        gating_kt_per_v: Total electrostatic shift of a site energy per volt, summed over all 8
            electrodes (kT/V); split between electrodes by distance.
        gating_decay_exponent: Exponent p of the distance weights (d + s) ** -p (dimensionless).
        gating_softening_m: Softening length s (m) of the distance weights.
        conductance_prefactor_s: Hopping conductance prefactor G0 (S); sets the current scale.
        voltage_min_v: Lower end of the recommended range of every voltage electrode (V).
        voltage_max_v: Upper end of the recommended range of every voltage electrode (V).
        electrode_slots: Perimeter slot (0..7, slot s at angle 45° × s) of electrodes 0..7, a
            permutation of 0..7. The default puts the output (7) at 0°, the data inputs 0 and 6
            at 135° and 225° (across the disc from the output) and the controls 1..5 at 45°, 90°,
            180°, 270° and 315°, so the inputs act on the output mostly through the network.
    """

    n_sites: int = 16
    device_radius_m: float = 150e-9
    localisation_length_m: float = 50e-9
    cutoff_localisation_lengths: float = 4.0
    min_site_spacing_m: float = 15e-9
    disorder_std_kt: float = 1.0
    energy_offset_kt: float = 0.0
    gating_kt_per_v: float = 12.0
    gating_decay_exponent: float = 2.0
    gating_softening_m: float = 20e-9
    conductance_prefactor_s: float = 4e-6
    voltage_min_v: float = -1.2
    voltage_max_v: float = 1.2
    electrode_slots: tuple[int, ...] = (3, 1, 2, 4, 6, 7, 5, 0)
    n_voltage_electrodes: int = N_VOLTAGE_ELECTRODES

    @classmethod
    def scaled(cls, n_voltage_electrodes: int, **overrides: float | int) -> HoppingParameters:
        """A larger device with ``n_voltage_electrodes`` voltage electrodes (for scaling studies).

        The disc grows with the perimeter so the electrodes stay as far apart as on the default
        8-electrode device: every length (radius, localisation length, site spacing, gating
        softening) is multiplied by ``s = (n_voltage_electrodes + 1) / 8``, which leaves the
        dimensionless physics (distances in localisation lengths) of the default device intact.
        The site count grows with the electrode count, ``n_sites = 16 + 2 (n - 7)``, so that
        every electrode keeps sites near it; the conductance prefactor is divided by the
        number of sites per default device (``n_sites / 16``) to keep the output current in the
        tens of nA. The layout is :func:`default_electrode_slots`: output at 0°, data inputs
        (electrodes 0 and n-1) near 135° and 225°. With ``n_voltage_electrodes = 7`` this is
        exactly the default device. ``overrides`` replace any resulting field.
        """
        n = int(n_voltage_electrodes)
        if n < 2:
            raise ValueError(f"n_voltage_electrodes must be >= 2, got {n_voltage_electrodes!r}")
        base = cls()
        if n == N_VOLTAGE_ELECTRODES:
            fields: dict[str, object] = {}
        else:
            s = (n + 1) / N_ELECTRODES_TOTAL
            n_sites = base.n_sites + 2 * (n - N_VOLTAGE_ELECTRODES)
            fields = {
                "n_sites": n_sites,
                "device_radius_m": base.device_radius_m * s,
                "localisation_length_m": base.localisation_length_m * s,
                "min_site_spacing_m": base.min_site_spacing_m * s,
                "gating_softening_m": base.gating_softening_m * s,
                "conductance_prefactor_s": base.conductance_prefactor_s * base.n_sites / n_sites,
                "electrode_slots": default_electrode_slots(n),
                "n_voltage_electrodes": n,
            }
        fields.update(overrides)
        return cls(**fields)  # type: ignore[arg-type]

    @property
    def n_electrodes_total(self) -> int:
        """Voltage electrodes plus the grounded output (the last electrode)."""
        return self.n_voltage_electrodes + 1

    def __post_init__(self) -> None:
        if not isinstance(self.n_voltage_electrodes, int) or self.n_voltage_electrodes < 1:
            raise ValueError(
                "n_voltage_electrodes must be a positive integer, got "
                f"{self.n_voltage_electrodes!r}"
            )
        if not isinstance(self.n_sites, int) or self.n_sites < 1:
            raise ValueError(f"n_sites must be a positive integer, got {self.n_sites!r}")
        positive = {
            "device_radius_m": self.device_radius_m,
            "localisation_length_m": self.localisation_length_m,
            "cutoff_localisation_lengths": self.cutoff_localisation_lengths,
            "gating_softening_m": self.gating_softening_m,
            "conductance_prefactor_s": self.conductance_prefactor_s,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite positive number, got {value!r}")
        non_negative = {
            "min_site_spacing_m": self.min_site_spacing_m,
            "disorder_std_kt": self.disorder_std_kt,
            "gating_kt_per_v": self.gating_kt_per_v,
            "gating_decay_exponent": self.gating_decay_exponent,
        }
        for name, value in non_negative.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not math.isfinite(self.energy_offset_kt):
            raise ValueError(f"energy_offset_kt must be finite, got {self.energy_offset_kt!r}")
        cutoff_m = self.cutoff_localisation_lengths * self.localisation_length_m
        if cutoff_m < self.device_radius_m:
            raise ValueError(
                f"the pair cutoff ({cutoff_m:.3g} m = cutoff_localisation_lengths x "
                f"localisation_length_m) is shorter than device_radius_m "
                f"({self.device_radius_m:.3g} m); raise cutoff_localisation_lengths so every "
                "site reaches an electrode"
            )
        n_total = self.n_voltage_electrodes + 1
        if sorted(self.electrode_slots) != list(range(n_total)):
            raise ValueError(
                f"electrode_slots must be a permutation of 0..{n_total - 1} (the "
                f"perimeter slot of each electrode), got {self.electrode_slots!r}"
            )
        if self.min_site_spacing_m >= 0.5 * self.device_radius_m:
            raise ValueError(
                f"min_site_spacing_m ({self.min_site_spacing_m:.3g} m) must be below half of "
                f"device_radius_m ({self.device_radius_m:.3g} m)"
            )
        if not (
            math.isfinite(self.voltage_min_v)
            and math.isfinite(self.voltage_max_v)
            and self.voltage_min_v <= 0.0 <= self.voltage_max_v
            and self.voltage_min_v < self.voltage_max_v
        ):
            raise ValueError(
                "voltage_min_v and voltage_max_v must be finite with voltage_min_v <= 0 <= "
                f"voltage_max_v and min < max, got [{self.voltage_min_v!r}, "
                f"{self.voltage_max_v!r}]"
            )


def default_electrode_slots(n_voltage_electrodes: int) -> tuple[int, ...]:
    """Perimeter slots of electrodes ``0..n`` (``n`` = the output) for ``n`` voltage electrodes.

    ``n + 1`` slots are spread evenly; the output takes slot 0 (0°), the data inputs 0 and
    ``n - 1`` the slots nearest 135° and 225° (across the disc from the output), and the
    controls ``1..n-2`` the remaining slots in increasing order. For 7 voltage electrodes this is
    the default layout ``(3, 1, 2, 4, 6, 7, 5, 0)``.
    """
    n = int(n_voltage_electrodes)
    if n < 2:
        raise ValueError(f"n_voltage_electrodes must be >= 2, got {n_voltage_electrodes!r}")
    n_total = n + 1
    first = round(n_total * 3 / 8)
    last = round(n_total * 5 / 8)
    if last == first:
        last = first + 1
    rest = [s for s in range(1, n_total) if s not in (first, last)]
    return (first, *rest, last, 0)


# --------------------------------------------------------------------------------------------
# Compiled kernels. Energies are in kT; every function is serial and without fastmath.
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _phi_from_exp(y: float, e_lo: float, e_hi: float) -> tuple[float, float]:
    """phi(y) = y / sinh(y) and dlog(phi)/dy for y = (eps_hi - eps_lo) / 2.

    ``e_lo = exp(eps_lo / 2)`` and ``e_hi = exp(eps_hi / 2)`` are passed in so no exponential is
    evaluated per pair; near y = 0 the Taylor series avoids the cancellation in their difference.
    """
    if abs(y) < _SERIES_LIMIT:
        y2 = y * y
        phi = 1.0 + y2 * (
            -1.0 / 6.0 + y2 * (7.0 / 360.0 + y2 * (-31.0 / 15120.0 + y2 * (127.0 / 604800.0)))
        )
        dlog = y * (-1.0 / 3.0 + y2 * (1.0 / 45.0 + y2 * (-2.0 / 945.0 + y2 * (1.0 / 4725.0))))
        return phi, dlog
    b_lo = e_lo * e_lo
    b_hi = e_hi * e_hi
    diff = b_hi - b_lo
    phi = 2.0 * y * e_lo * e_hi / diff
    dlog = 1.0 / y - (b_hi + b_lo) / diff
    return phi, dlog


@numba.njit(cache=True)
def _assemble(
    v: np.ndarray,
    eps0: np.ndarray,
    gamma: np.ndarray,
    pair_i: np.ndarray,
    pair_j: np.ndarray,
    pair_c: np.ndarray,
    elec_c: np.ndarray,
    eps: np.ndarray,
    half_exp: np.ndarray,
    elec_g: np.ndarray,
    pair_g: np.ndarray,
    lap: np.ndarray,
    rhs: np.ndarray,
) -> None:
    """Site energies, conductances (S), Laplacian and right-hand side for one sample ``v`` (V)."""
    n = eps0.shape[0]
    n_in = gamma.shape[1]
    n_el = elec_c.shape[1]
    for i in range(n):
        e = eps0[i]
        for k in range(n_in):
            e += gamma[i, k] * v[k]
        eps[i] = e
        half_exp[i] = math.exp(0.5 * e)
        for j in range(n):
            lap[i, j] = 0.0
        rhs[i] = 0.0
    for i in range(n):
        h = half_exp[i]
        q = h / (1.0 + h * h)
        phi, _ = _phi_from_exp(0.5 * eps[i], 1.0, h)
        site_factor = 0.5 * q * phi
        diag = 0.0
        acc = 0.0
        for k in range(n_el):
            g = elec_c[i, k] * site_factor
            elec_g[i, k] = g
            diag += g
            if k < n_in:
                acc += g * v[k]
        lap[i, i] += diag
        rhs[i] += acc
    for p in range(pair_i.shape[0]):
        i = pair_i[p]
        j = pair_j[p]
        hi = half_exp[i]
        hj = half_exp[j]
        phi, _ = _phi_from_exp(0.5 * (eps[j] - eps[i]), hi, hj)
        g = pair_c[p] * (hi / (1.0 + hi * hi)) * (hj / (1.0 + hj * hj)) * phi
        pair_g[p] = g
        lap[i, i] += g
        lap[j, j] += g
        lap[i, j] -= g
        lap[j, i] -= g


@numba.njit(cache=True)
def _cholesky_in_place(a: np.ndarray) -> None:
    """Overwrite the lower triangle of the SPD matrix ``a`` with its Cholesky factor."""
    n = a.shape[0]
    for j in range(n):
        s = a[j, j]
        for k in range(j):
            s -= a[j, k] * a[j, k]
        d = math.sqrt(s)
        a[j, j] = d
        inv = 1.0 / d
        for i in range(j + 1, n):
            t = a[i, j]
            for k in range(j):
                t -= a[i, k] * a[j, k]
            a[i, j] = t * inv


@numba.njit(cache=True)
def _cholesky_solve(chol: np.ndarray, b: np.ndarray, x: np.ndarray) -> None:
    """Solve ``L L^T x = b`` with the factor from :func:`_cholesky_in_place`."""
    n = chol.shape[0]
    for i in range(n):
        t = b[i]
        for k in range(i):
            t -= chol[i, k] * x[k]
        x[i] = t / chol[i, i]
    for i in range(n - 1, -1, -1):
        t = x[i]
        for k in range(i + 1, n):
            t -= chol[k, i] * x[k]
        x[i] = t / chol[i, i]


@numba.njit(cache=True)
def _current_kernel(
    volts: np.ndarray,
    eps0: np.ndarray,
    gamma: np.ndarray,
    pair_i: np.ndarray,
    pair_j: np.ndarray,
    pair_c: np.ndarray,
    elec_c: np.ndarray,
    out_col: int,
) -> np.ndarray:
    """Output current (A) for every row of ``volts`` (V)."""
    n_samples = volts.shape[0]
    n = eps0.shape[0]
    eps = np.empty(n)
    half_exp = np.empty(n)
    elec_g = np.empty(elec_c.shape)
    pair_g = np.empty(pair_c.shape[0])
    lap = np.empty((n, n))
    rhs = np.empty(n)
    u = np.empty(n)
    current = np.empty(n_samples)
    for s in range(n_samples):
        _assemble(
            volts[s], eps0, gamma, pair_i, pair_j, pair_c, elec_c, eps, half_exp, elec_g, pair_g,
            lap, rhs,
        )  # fmt: skip
        _cholesky_in_place(lap)
        _cholesky_solve(lap, rhs, u)
        total = 0.0
        for i in range(n):
            total += elec_g[i, out_col] * u[i]
        current[s] = total
    return current


@numba.njit(cache=True)
def _current_gradient_kernel(
    volts: np.ndarray,
    eps0: np.ndarray,
    gamma: np.ndarray,
    pair_i: np.ndarray,
    pair_j: np.ndarray,
    pair_c: np.ndarray,
    elec_c: np.ndarray,
    out_col: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Output current (A) and its exact gradient dI/dV (A/V) for every row of ``volts``."""
    n_samples = volts.shape[0]
    n = eps0.shape[0]
    n_in = gamma.shape[1]
    n_el = elec_c.shape[1]
    eps = np.empty(n)
    half_exp = np.empty(n)
    elec_g = np.empty(elec_c.shape)
    pair_g = np.empty(pair_c.shape[0])
    lap = np.empty((n, n))
    rhs = np.empty(n)
    u = np.empty(n)
    g_out = np.empty(n)
    lam = np.empty(n)
    d_eps = np.empty(n)
    current = np.empty(n_samples)
    grad = np.empty((n_samples, n_in))
    for s in range(n_samples):
        v = volts[s]
        _assemble(
            v, eps0, gamma, pair_i, pair_j, pair_c, elec_c, eps, half_exp, elec_g, pair_g,
            lap, rhs,
        )  # fmt: skip
        _cholesky_in_place(lap)
        _cholesky_solve(lap, rhs, u)
        for i in range(n):
            g_out[i] = elec_g[i, out_col]
        _cholesky_solve(lap, g_out, lam)
        total = 0.0
        for i in range(n):
            total += g_out[i] * u[i]
        current[s] = total
        for k in range(n_in):
            grad[s, k] = 0.0
        # Site-electrode edges: dI/dG = -(lam_i - Lam_k)(u_i - V_k), Lam_out = 1, else 0.
        for i in range(n):
            h = half_exp[i]
            tanh_half = (h * h - 1.0) / (h * h + 1.0)
            _, dlog_phi = _phi_from_exp(0.5 * eps[i], 1.0, h)
            dlog_g = -0.5 * tanh_half + 0.5 * dlog_phi
            acc = 0.0
            for k in range(n_el):
                g = elec_g[i, k]
                if k == out_col:
                    acc += -(lam[i] - 1.0) * u[i] * g
                else:
                    acc += -lam[i] * (u[i] - v[k]) * g
                    grad[s, k] += lam[i] * g
            d_eps[i] = acc * dlog_g
        # Site-site edges.
        for p in range(pair_i.shape[0]):
            i = pair_i[p]
            j = pair_j[p]
            hi = half_exp[i]
            hj = half_exp[j]
            _, dlog_phi = _phi_from_exp(0.5 * (eps[j] - eps[i]), hi, hj)
            tanh_i = (hi * hi - 1.0) / (hi * hi + 1.0)
            tanh_j = (hj * hj - 1.0) / (hj * hj + 1.0)
            d_i_g = -(lam[i] - lam[j]) * (u[i] - u[j]) * pair_g[p]
            d_eps[i] += d_i_g * (-0.5 * tanh_i - 0.5 * dlog_phi)
            d_eps[j] += d_i_g * (-0.5 * tanh_j + 0.5 * dlog_phi)
        for i in range(n):
            for k in range(n_in):
                grad[s, k] += d_eps[i] * gamma[i, k]
    return current, grad


# --------------------------------------------------------------------------------------------
# Public model
# --------------------------------------------------------------------------------------------


def _place_sites(params: HoppingParameters, electrodes_xy: FloatArray, seed: int) -> FloatArray:
    """Uniform random site positions (m) in the disc, respecting ``min_site_spacing_m``."""
    rng = np.random.default_rng(seed)
    radius = params.device_radius_m
    spacing = params.min_site_spacing_m
    sites: list[FloatArray] = []
    attempts = 0
    max_attempts = 10_000 * params.n_sites
    while len(sites) < params.n_sites:
        attempts += 1
        if attempts > max_attempts:
            raise ValueError(
                f"could not place {params.n_sites} sites at least {spacing:.3g} m apart in a disc "
                f"of radius {radius:.3g} m; lower n_sites or min_site_spacing_m"
            )
        r = radius * math.sqrt(rng.random())
        theta = 2.0 * math.pi * rng.random()
        xy = np.array([r * math.cos(theta), r * math.sin(theta)])
        if np.min(np.hypot(*(electrodes_xy - xy).T)) < spacing:
            continue
        if sites and np.min(np.hypot(*(np.array(sites) - xy).T)) < spacing:
            continue
        sites.append(xy)
    return np.array(sites)


class HoppingNetworkModel:
    """Smooth hopping-network model of a DNPU (implements :class:`simulated_hw.models.DeviceModel`).

    See the module docstring for the physics. One instance is one device realisation, fixed by
    ``seed``; it is immutable after construction.

    Args:
        params: Physical parameters; ``None`` uses the defaults of :class:`HoppingParameters`.
        seed: Seed of the device realisation (site positions and disorder energies).
    """

    def __init__(self, params: HoppingParameters | None = None, seed: int = 0) -> None:
        if params is None:
            params = HoppingParameters()
        if not isinstance(params, HoppingParameters):
            raise TypeError(f"params must be a HoppingParameters, got {type(params).__name__}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self._params = params
        self._seed = int(seed)
        radius = params.device_radius_m
        a = params.localisation_length_m
        cutoff = params.cutoff_localisation_lengths * a

        n_in = params.n_voltage_electrodes
        n_total = n_in + 1
        self._n_in = n_in
        angles = 2.0 * math.pi * np.asarray(params.electrode_slots, float) / n_total
        electrodes_xy = radius * np.column_stack([np.cos(angles), np.sin(angles)])
        sites_xy = _place_sites(params, electrodes_xy, self._seed)
        energy_rng = np.random.default_rng([self._seed, 1])
        eps0 = params.energy_offset_kt + params.disorder_std_kt * energy_rng.standard_normal(
            params.n_sites
        )

        d_se = np.hypot(
            sites_xy[:, None, 0] - electrodes_xy[None, :, 0],
            sites_xy[:, None, 1] - electrodes_xy[None, :, 1],
        )
        weights = (d_se + params.gating_softening_m) ** (-params.gating_decay_exponent)
        gamma_all = params.gating_kt_per_v * weights / weights.sum(axis=1, keepdims=True)
        gamma = np.ascontiguousarray(gamma_all[:, :n_in])

        g0 = params.conductance_prefactor_s
        elec_c = np.where(d_se <= cutoff, g0 * np.exp(-2.0 * d_se / a), 0.0)
        pair_i, pair_j = np.triu_indices(params.n_sites, k=1)
        r_ss = np.hypot(*(sites_xy[pair_i] - sites_xy[pair_j]).T)
        keep = r_ss <= cutoff
        self._pair_i = np.ascontiguousarray(pair_i[keep], dtype=np.int64)
        self._pair_j = np.ascontiguousarray(pair_j[keep], dtype=np.int64)
        self._pair_c = np.ascontiguousarray(g0 * np.exp(-2.0 * r_ss[keep] / a))
        self._elec_c = np.ascontiguousarray(elec_c)
        self._eps0 = eps0
        self._gamma = gamma
        self._sites_xy = sites_xy
        self._electrodes_xy = electrodes_xy
        ranges = np.tile([params.voltage_min_v, params.voltage_max_v], (n_in, 1))
        self._ranges = ranges.astype(np.float64)
        for arr in (self._pair_i, self._pair_j, self._pair_c, self._elec_c, self._eps0, gamma):
            arr.setflags(write=False)
        for arr in (sites_xy, electrodes_xy, self._ranges):
            arr.setflags(write=False)

    # ---- DeviceModel -------------------------------------------------------------------------

    @property
    def n_electrodes(self) -> int:
        """Number of voltage electrodes (7 for the default device)."""
        return self._n_in

    @property
    def output_electrode(self) -> int:
        """Index of the grounded output electrode (the last one, 7 for the default device)."""
        return self._n_in

    @property
    def voltage_ranges_v(self) -> FloatArray:
        """Recommended ``[min, max]`` voltage (V) per electrode, shape ``(7, 2)`` (a copy)."""
        return self._ranges.copy()

    def current_a(self, voltages_v: FloatArray) -> FloatArray:
        """Output current (A) into the grounded output electrode for each row of ``voltages_v`` (V).

        Args:
            voltages_v: Shape ``(n_samples, n_electrodes)`` (V), 7 electrodes on the default
                device; a 1-D array is one sample.

        Returns:
            Shape ``(n_samples,)`` (A); shape ``(1,)`` for a 1-D input.
        """
        volts = self._validated(voltages_v)
        return _current_kernel(
            volts, self._eps0, self._gamma, self._pair_i, self._pair_j, self._pair_c,
            self._elec_c, self._n_in,
        )  # fmt: skip

    def gradient_a_per_v(self, voltages_v: FloatArray) -> FloatArray:
        """Exact gradient dI/dV (A/V) for each row of ``voltages_v`` (V), shape ``(n_samples, 7)``.

        A 1-D input of 7 voltages gives shape ``(1, 7)``.
        """
        return self.current_and_gradient(voltages_v)[1]

    def current_and_gradient(self, voltages_v: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Output current (A), shape ``(n_samples,)``, and gradient dI/dV (A/V), ``(n_samples, 7)``.

        Cheaper than calling :meth:`current_a` and :meth:`gradient_a_per_v` separately.
        """
        volts = self._validated(voltages_v)
        return _current_gradient_kernel(
            volts, self._eps0, self._gamma, self._pair_i, self._pair_j, self._pair_c,
            self._elec_c, self._n_in,
        )  # fmt: skip

    # ---- introspection -------------------------------------------------------------------------

    @property
    def params(self) -> HoppingParameters:
        """The physical parameters of this device."""
        return self._params

    @property
    def seed(self) -> int:
        """Seed of this device realisation."""
        return self._seed

    @property
    def sites_xy_m(self) -> FloatArray:
        """Site positions (m), shape ``(n_sites, 2)`` (read-only)."""
        return self._sites_xy

    @property
    def electrodes_xy_m(self) -> FloatArray:
        """Electrode positions (m), shape ``(8, 2)``; row 7 is the output (read-only)."""
        return self._electrodes_xy

    @property
    def disorder_energies_kt(self) -> FloatArray:
        """Site energies at zero voltage (units of kT), shape ``(n_sites,)`` (read-only)."""
        return self._eps0

    @property
    def gating_kt_per_v_matrix(self) -> FloatArray:
        """Gating coefficients d(eps_i)/dV_k (kT/V), shape ``(n_sites, 7)`` (read-only)."""
        return self._gamma

    @property
    def n_pairs(self) -> int:
        """Number of site-site pairs kept inside the cutoff."""
        return int(self._pair_i.size)

    def _validated(self, voltages_v: FloatArray) -> FloatArray:
        volts = np.asarray(voltages_v, dtype=np.float64)
        if volts.ndim == 1:
            volts = volts[None, :]
        n_in = self._n_in
        if volts.ndim != 2 or volts.shape[1] != n_in:
            raise ValueError(
                f"voltages_v must have shape (n_samples, {n_in}) or ({n_in},), got "
                f"{np.shape(voltages_v)}"
            )
        if not np.all(np.isfinite(volts)):
            raise ValueError("voltages_v contains NaN or infinite values; pass finite volts")
        return np.ascontiguousarray(volts)
