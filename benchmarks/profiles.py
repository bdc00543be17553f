"""Where a process spent its time: a summary of a py-spy recording in its raw format (``--format raw``)."""

from __future__ import annotations

from pathlib import Path


def print_profile(output: Path, title: str, functions_shown: int = 30) -> None:
    """
    The share of samples per package and per function (inclusive: a sample counts in every frame of its stack).
    Functions on nearly every sample's stack (the process's main loop, the task runner) are left out.
    """
    packages: dict[str, int] = {}
    functions: dict[str, int] = {}
    total = 0
    for line in output.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, samples = stack.split(";"), int(count)
        total += samples
        for name in {package(frame) for frame in frames}:
            packages[name] = packages.get(name, 0) + samples
        for name in {frame.split(" (")[0] + " (" + package(frame) + ")" for frame in frames}:
            functions[name] = functions.get(name, 0) + samples
    print(f"\n{title} (py-spy, {total:,} samples; a sample counts in every package on its stack)")
    for name, samples in sorted(packages.items(), key=lambda item: -item[1])[:14]:
        print(f"  {100 * samples / max(total, 1):5.1f}%  {name}")
    print("  functions (inclusive), those on over 97% of the stacks left out:")
    telling = {name: samples for name, samples in functions.items() if samples <= 0.97 * total}
    for name, samples in sorted(telling.items(), key=lambda item: -item[1])[:functions_shown]:
        print(f"  {100 * samples / max(total, 1):5.1f}%  {name}")


def package(frame: str) -> str:
    """``event_routing_backends``, ``tincan``, ``json``… from a py-spy frame ``function (path:line)``."""
    path = frame.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0]
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0].removesuffix(".py")
    if "/devstack/" in path:
        return "devstack"
    if "aspects_sink/" in path:
        return "aspects_sink/" + path.split("aspects_sink/")[1].removesuffix(".py")
    return "stdlib:" + path.rsplit("/", 1)[-1].removesuffix(".py")
