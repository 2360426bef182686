"""Estimator variance against the Cramér–Rao bound, and reported against measured errors.

Two measurements:

* **Bare demodulators** (Monte Carlo, no device): five tones (220, 270, 330, 520, 620 Hz),
  f_s = 10 kHz, T = 0.1 s, white Gaussian noise of one-sided PSD S = 1e-5 nA²/Hz. The variance
  of the in-phase and quadrature estimates of the joint least-squares fit
  (:func:`labctl.homodyne.demod.fit_tones`) and of the boxcar demodulator is set against the CRB
  ``S/T``; a second run with slightly off-grid tones shows the boxcar's leakage (MSE/CRB).
* **The engine on the simulated DNPU** (``configs/sim_dnpu.yaml``, 10 mV tones, 0.1 s windows,
  chain calibrated through the reference resistor): ``repeats`` gradients at one seeded
  operating point, under white noise only (1/f, drift and amplifier bandwidth off) and under
  the full chain (1/f noise with a 100 Hz corner, drift, 2 kHz amplifier roll-off). For parallel
  HGE the variance of each component is set against ``S(f_k) / (A² T)`` (the CRB of a tone of
  known frequency; roll-off attenuates signal and input-referred noise alike, so the calibrated
  estimate's bound does not change); for central finite differences (10 mV half step, 0.1 s per
  plateau) against the white-noise ideal ``S_white / (4 h² T)``. The standard errors the engine
  reports are compared with the measured standard deviations.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from labctl.benchsuite.common import (
    NA,
    Headline,
    Log,
    Section,
    SuiteSize,
    fmt,
    md_table,
    new_figure,
    save_figure,
)
from labctl.benchsuite.devices import calibrate, engine_for, open_dnpu, random_points
from labctl.device import FloatArray
from labctl.device.safety import SafeDevice
from labctl.homodyne.demod import boxcar_demodulate, fit_tones
from labctl.homodyne.drive import device_drive
from labctl.homodyne.engine import GradientEngine
from labctl.homodyne.fd_errors import NoiseModel, drift_coefficient_a2_hz
from labctl.homodyne.plan import PlanWarning
from simulated_hw.backend import SimulatedSettings, chain_settings
from simulated_hw.chain import ChainSettings

FS_HZ = 10_000.0
WINDOW_S = 0.1
N_SAMPLES = round(FS_HZ * WINDOW_S)
FREQS_HZ = (220.0, 270.0, 330.0, 520.0, 620.0)
OFF_GRID_HZ = (223.7, 268.2, 333.1, 517.4, 622.9)
DRIVE_V = np.array([30e-3, 10e-3, 10e-3, 5e-3, 5e-3])
GRADIENT_A_PER_V = np.array([40e-9, -15e-9, 8e-9, 25e-9, -3e-9])
PHASES_RAD = (0.0, 0.4, 1.3, -0.7, 2.2)
THETA_RAD = np.array([0.1, -0.3, 0.2, 0.0, 0.5])
PSD_A2_PER_HZ = 1e-5 * 1e-18
AMPLITUDE_V = 0.01
FD_STEP_V = 0.01
SETTLE_S = 0.015
CHUNK = 25
SEED = 20250101

CONDITIONS: dict[str, dict[str, Any]] = {
    "white": {"flicker": False, "drift": False, "bandwidth": False},
    "1/f + roll-off": {},
}


def demodulator_mc(
    freqs: tuple[float, ...], n_windows: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Complex estimates ``(n_windows, n_tones)`` of the LS fit and the boxcar, and the truth."""
    truth = DRIVE_V * GRADIENT_A_PER_V * np.exp(1j * THETA_RAD)
    sigma = np.sqrt(PSD_A2_PER_HZ * FS_HZ / 2)
    ls = np.empty((n_windows, len(freqs)), dtype=complex)
    box = np.empty_like(ls)
    t = np.arange(N_SAMPLES) / FS_HZ
    clean = 35e-9 + sum(
        abs(c) * np.sin(2 * np.pi * f * t + phi + np.angle(c))
        for f, phi, c in zip(freqs, PHASES_RAD, truth, strict=True)
    )
    batch = 1000
    for start in range(0, n_windows, batch):
        n = min(batch, n_windows - start)
        noisy = clean + rng.normal(0.0, sigma, size=(n, N_SAMPLES))
        ls[start : start + n] = fit_tones(
            noisy, FS_HZ, freqs, phases_rad=PHASES_RAD
        ).complex_amplitude
        box[start : start + n] = boxcar_demodulate(noisy, FS_HZ, freqs, phases_rad=PHASES_RAD)
    return {"ls": ls, "box": box, "truth": truth}


def engine_repeats(effects: dict[str, Any], repeats: int, seed: int) -> dict[str, Any]:
    """Repeated parallel-HGE and FD gradients at one operating point under one chain setting."""
    homodyne = {
        "amplitude_v": AMPLITUDE_V,
        "window_s": WINDOW_S,
        "settle_s": SETTLE_S,
        "fd_step_v": FD_STEP_V,
    }
    override = {
        "setup": {"backend": {"settings": {"effects": effects, "noise_seed": seed}}},
        "homodyne": homodyne,
    }
    with open_dnpu(override) as (device, loaded):
        backend = loaded.backend_settings
        assert isinstance(backend, SimulatedSettings)
        chain = chain_settings(loaded.setup, backend)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlanWarning)
            engine = engine_for(device, loaded, homodyne, None)
        freqs = np.array(engine.plan.frequencies_hz)
        response = calibrate(device, loaded, list(freqs), 1.0)
        engine.set_calibration(response)
        point = random_points(device, engine, 1, np.random.default_rng(seed))[0]
        truth = device.reference_gradient(point)
        out: dict[str, Any] = {"frequencies_hz": freqs}
        for mode in ("parallel", "fd"):
            estimates, stderrs = [], []
            for lo in range(0, repeats, CHUNK):
                n = min(CHUNK, repeats - lo)
                batch = engine.measure(np.repeat(point[None, :], n, axis=0), mode=mode)
                estimates.append(batch.gradients_a_per_v)
                stderrs.append(batch.stderr_a_per_v)
            out[mode] = (np.concatenate(estimates), np.concatenate(stderrs))
        out["psd"] = chain.noise_psd_a2_per_hz(freqs)
        out["white"] = chain.white_psd_a2_per_hz
        out["fd_noise_var"] = fd_noise_variance(device, engine, point, chain)
        out["truth"] = None if truth is None else truth[list(engine.electrode_indices)]
    return out


def fd_noise_variance(
    device: SafeDevice, engine: GradientEngine, point: FloatArray, chain: ChainSettings
) -> float:
    """Variance (A²/V²) of one central-FD component that the chain's true noise spectrum gives.

    ``∫ S(f) |W(f)|² df / (2h)²`` for the difference of the ``+h`` and ``−h`` plateau means
    (their length and separation taken from the engine's own drive), with ``S`` the simulated
    chain's white + 1/f + random-walk spectrum: the noise-limited variance of that estimator.
    """
    index = engine.electrode_indices[0]
    plateaus = np.repeat(point[None, :], 3, axis=0)
    plateaus[1, index] += FD_STEP_V
    plateaus[2, index] -= FD_STEP_V
    drive = device_drive(device, plateaus, None, WINDOW_S, SETTLE_S)
    plus, minus = drive.windows[1], drive.windows[2]
    model = NoiseModel(
        white_a2_per_hz=chain.white_psd_a2_per_hz if chain.enable_noise else 0.0,
        flicker_a2=(
            chain.white_psd_a2_per_hz * chain.flicker_corner_hz if chain.enable_flicker else 0.0
        ),
        drift_a2_hz=(
            drift_coefficient_a2_hz(chain.drift_a_per_sqrt_s) if chain.enable_drift else 0.0
        ),
        sample_rate_hz=drive.sample_rate_hz,
    )
    variance = model.difference_variance_a2(plus.length, minus.start - plus.start)
    return variance / (2 * FD_STEP_V) ** 2


def _ratios(estimates: FloatArray, stderrs: FloatArray, bound: FloatArray) -> dict[str, FloatArray]:
    var = estimates.var(axis=0, ddof=1)
    sd = np.sqrt(var)
    reported = np.sqrt(np.mean(stderrs**2, axis=0))
    return {"var_ratio": var / bound, "stderr_ratio": reported / sd, "sd": sd, "reported": reported}


def run(size: SuiteSize, out_dir: Path, log: Log) -> Section:
    """The CRB part of the suite."""
    start = time.perf_counter()
    section = Section("crb", "Estimator variance vs the Cramér–Rao bound")
    rng = np.random.default_rng(SEED)
    crb = PSD_A2_PER_HZ / WINDOW_S
    log(f"crb: bare demodulators, {size.crb_windows} windows")
    coherent = demodulator_mc(FREQS_HZ, size.crb_windows, rng)
    off_grid = demodulator_mc(OFF_GRID_HZ, size.crb_windows, rng)
    rows = []
    for k, f in enumerate(FREQS_HZ):
        ls, box = coherent["ls"][:, k], coherent["box"][:, k]
        mse_ls = np.mean(np.abs(off_grid["ls"][:, k] - off_grid["truth"][k]) ** 2) / 2
        mse_box = np.mean(np.abs(off_grid["box"][:, k] - off_grid["truth"][k]) ** 2) / 2
        rows.append(
            [
                f"{f:g}",
                f"{DRIVE_V[k] * 1e3:g}",
                fmt(ls.real.var(ddof=1) / crb),
                fmt(ls.imag.var(ddof=1) / crb),
                fmt(box.real.var(ddof=1) / crb),
                fmt(box.imag.var(ddof=1) / crb),
                fmt(mse_ls / crb),
                fmt(mse_box / crb),
            ]
        )
    section.lines += [
        "Bare demodulators: 5 tones, f_s = 10 kHz, T = 0.1 s, white noise S = 1e-5 nA²/Hz, "
        f"{size.crb_windows} windows (Monte-Carlo relative sd of a ratio "
        f"≈ {np.sqrt(2 / size.crb_windows):.1%}). Off grid: tones 2–4 Hz off the 10 Hz bins.",
        "",
        *md_table(
            [
                "f (Hz)",
                "A (mV)",
                "LS X var/CRB",
                "LS Y var/CRB",
                "boxcar X",
                "boxcar Y",
                "off-grid LS MSE/CRB",
                "off-grid boxcar MSE/CRB",
            ],
            rows,
        ),
        "",
    ]

    results = {}
    for name, effects in CONDITIONS.items():
        log(f"crb: engine on the simulated DNPU, {name}, {size.crb_repeats} repeats")
        results[name] = engine_repeats(effects, size.crb_repeats, seed=SEED % 1000)
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for name, res in results.items():
        hge_bound = res["psd"] / (AMPLITUDE_V**2 * WINDOW_S)
        n_freqs = len(res["frequencies_hz"])
        fd_white = np.full(n_freqs, res["white"] / (4 * FD_STEP_V**2 * WINDOW_S))
        fd_bound = np.full(n_freqs, res["fd_noise_var"])
        hge = _ratios(res["parallel"][0], res["parallel"][1], hge_bound)
        fd = _ratios(res["fd"][0], res["fd"][1], fd_bound)
        fd["white_ratio"] = fd["sd"] ** 2 / fd_white
        summary[name] = {
            "hge_var": float(np.mean(hge["var_ratio"])),
            "hge_se": float(np.mean(hge["stderr_ratio"])),
            "fd_var": float(np.mean(fd["var_ratio"])),
            "fd_se": float(np.mean(fd["stderr_ratio"])),
            "fd_white": float(np.mean(fd["white_ratio"])),
        }
        res["ratios"] = {"parallel HGE": hge, "central FD": fd}
        for method, r in res["ratios"].items():
            white = r.get("white_ratio")
            rows.append(
                [
                    name,
                    method,
                    fmt(float(np.mean(r["var_ratio"]))),
                    f"{fmt(float(np.min(r['var_ratio'])))}–{fmt(float(np.max(r['var_ratio'])))}",
                    "–" if white is None else fmt(float(np.mean(white))),
                    fmt(float(np.mean(r["sd"])) * NA),
                    fmt(float(np.mean(r["reported"])) * NA),
                    fmt(float(np.mean(r["stderr_ratio"]))),
                    f"{fmt(float(np.min(r['stderr_ratio'])))}–"
                    f"{fmt(float(np.max(r['stderr_ratio'])))}",
                ]
            )
    section.lines += [
        "The engine on the simulated DNPU (5 controls, 10 mV, T = 0.1 s, calibrated projection; "
        f"FD: 10 mV half step, 0.1 s plateaus), {size.crb_repeats} gradients at one operating "
        "point per condition. Bound: HGE `S(f_k)/(A²T)`; FD: the variance the chain's true "
        "noise spectrum (white + 1/f + drift) gives the difference of the ±h plateau means, "
        "`∫ S(f)|W(f)|² df / (2h)²` (the noise limit of that estimator); the white-noise ideal "
        "`S_white/(4h²T)` in its own column. FD's standard errors come from the noise spectrum "
        "fitted to each record (`labctl.homodyne.fd_errors`). Reported/measured: RMS of the "
        "reported standard errors over the measured standard deviation (1 = honest error bars).",
        "",
        *md_table(
            [
                "noise",
                "method",
                "var/bound (mean)",
                "range over controls",
                "var / white-noise ideal",
                "measured sd (nA/V)",
                "reported se (nA/V)",
                "reported/measured",
                "range",
            ],
            rows,
        ),
        "",
    ]
    n_controls = len(results["white"]["frequencies_hz"])
    mc_sd = float(np.sqrt(2 / (size.crb_repeats - 1) / n_controls))  # of the mean ratio
    for name in CONDITIONS:
        s = summary[name]
        section.headline.append(
            Headline(
                f"HGE variance / CRB, {name}",
                f"{s['hge_var']:.3f} ± {mc_sd:.3f}",
                "≤ 1.05",
                s["hge_var"] <= 1.05,
            )
        )
    for name in CONDITIONS:
        s = summary[name]
        section.headline.append(
            Headline(
                f"HGE reported / measured standard error, {name}",
                f"{s['hge_se']:.2f}",
                "0.90–1.10",
                0.9 <= s["hge_se"] <= 1.1,
            )
        )
        section.headline.append(
            Headline(
                f"FD reported / measured standard error, {name}",
                f"{s['fd_se']:.2f}",
                "0.75–1.25",
                0.75 <= s["fd_se"] <= 1.25,
            )
        )
        section.headline.append(
            Headline(
                f"FD variance / its noise limit (true spectrum), {name}",
                f"{s['fd_var']:.2f} ({fmt(s['fd_white'])}× the white-noise ideal)",
                "–",
            )
        )

    fig, (ax_var, ax_se) = new_figure(2, 1)
    width = 0.35
    for i, name in enumerate(CONDITIONS):
        res = results[name]
        x = np.arange(len(res["frequencies_hz"]))
        ax_var.bar(x + (i - 0.5) * width, res["ratios"]["parallel HGE"]["var_ratio"], width,
                   label=f"HGE, {name}")  # fmt: skip
        ax_se.scatter(
            res["ratios"]["parallel HGE"]["sd"] * NA,
            res["ratios"]["parallel HGE"]["reported"] * NA,
            label=f"HGE, {name}",
        )
        ax_se.scatter(
            res["ratios"]["central FD"]["sd"] * NA,
            res["ratios"]["central FD"]["reported"] * NA,
            marker="x",
            label=f"FD, {name}",
        )
    freqs = results["white"]["frequencies_hz"]
    ax_var.set_xticks(np.arange(len(freqs)), [f"{f:g}" for f in freqs])
    ax_var.axhline(1.0, color="k", lw=0.8)
    ax_var.axhline(1.05, color="k", lw=0.8, ls="--")
    ax_var.set_xlabel("tone frequency (Hz)")
    ax_var.set_ylabel("var(g) / CRB")
    ax_var.set_title("parallel HGE on the simulated DNPU")
    ax_var.legend(fontsize=8)
    lim = max(ax_se.get_xlim()[1], ax_se.get_ylim()[1])
    ax_se.plot([0, lim], [0, lim], "k-", lw=0.8)
    ax_se.set_xlabel("measured sd (nA/V)")
    ax_se.set_ylabel("reported standard error (nA/V)")
    ax_se.set_xscale("log")
    ax_se.set_yscale("log")
    ax_se.set_title("reported vs measured errors")
    ax_se.legend(fontsize=8)
    section.figures.append(save_figure(fig, out_dir, "crb.png"))
    section.wall_s = time.perf_counter() - start
    return section
