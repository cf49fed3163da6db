"""Building what is measured: the release binaries, the C reference servers
of bench/reference/, iocp_loop.exe and Wine; and what the binaries can do
(their --help)."""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from echobench.procs import ANY_PORT, REL, ROOT, STRESS, Server
from echobench.stress import UdpReport


WINDOWS_TARGET = "x86_64-pc-windows-gnu"


def build_rust(ctx, backends):
    cmd = ["cargo", "build", "--release", "--bins", "--examples"]
    ctx.log("$ " + shlex.join(cmd))
    subprocess.run(cmd, cwd=ROOT, check=True)
    if backends:
        env = dict(os.environ, RUSTFLAGS=(os.environ.get("RUSTFLAGS", "") + " --cfg mio_unsupported_force_poll_poll").strip())
        cmd = ["cargo", "build", "--release", "--bin", "echoloop", "--target-dir", "target/pollbuild"]
        ctx.log("$ RUSTFLAGS='--cfg mio_unsupported_force_poll_poll' " + shlex.join(cmd))
        subprocess.run(cmd, cwd=ROOT, check=True, env=env)


def build_c(ctx, name):
    """Builds bench/reference/NAME.c into target/bench/NAME (when the source
    is newer); returns (path, None), or (None, why not)."""
    src = ROOT / "bench" / "reference" / f"{name}.c"
    out = ROOT / "target" / "bench" / name
    cc = shutil.which("cc") or shutil.which("gcc")
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out, None
    if not cc:
        return None, "no C compiler (cc or gcc) found"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, "-O2", "-Wall", "-Wextra", "-o", str(out), str(src)]
    ctx.log("$ " + shlex.join(os.path.relpath(c, ROOT) if c.startswith(str(ROOT)) else c for c in cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        return None, f"{Path(cc).name} failed on {os.path.relpath(src, ROOT)}: {p.stderr.strip()[-400:]}"
    if p.stderr.strip():
        ctx.log(p.stderr.strip())
    return out, None


def reference_spec(ctx, results, kind, override, name):
    """The reference server of one column (kind "tcp" or "udp"): the server
    given on the command line, or the C reference built here; None (with a
    printed reason) when there is none."""
    if override:
        path = Path(override).resolve()
        results["settings"]["references"][kind] = str(path)
        return Server(f"reference: {path.name}", [path, ANY_PORT])
    path, why = build_c(ctx, name)
    if path is None:
        ctx.say(f"{kind.upper()} reference column skipped: {why}")
        results["settings"]["references"][kind] = f"skipped: {why}"
        return None
    results["settings"]["references"][kind] = os.path.relpath(path, ROOT)
    ctx.say(f"{kind.upper()} reference: {os.path.relpath(path, ROOT)}, built from bench/reference/{name}.c")
    return Server(f"reference: {name}", [path, ANY_PORT])


def wine_env():
    """The environment .ci/windows.sh runs Windows programs in."""
    env = dict(os.environ, WINEPREFIX=str(ROOT / "target" / "wine" / "prefix"), WINEDEBUG="-all",
               WINEDLLOVERRIDES="mscoree,mshtml=", WINEARCH="win64")
    for k in ("DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(k, None)
    return env


def prepare_wine(ctx):
    """Builds iocp_loop.exe and readies Wine as .ci/windows.sh does (the
    bcryptprimitives.dll shim next to the executable and in the prefix);
    returns its Server, or None with the reason printed."""
    missing = [t for t in ("wine", "wineserver", "x86_64-w64-mingw32-gcc") if not shutil.which(t)]
    if missing:
        ctx.say(f"iocp_loop skipped: {', '.join(missing)} not found (`bash .ci/windows.sh` installs them)")
        return None
    exe_dir = ROOT / "target" / WINDOWS_TARGET / "release" / "examples"
    env = wine_env()
    try:
        if not ctx.args.no_build:
            cmd = ["cargo", "build", "--release", "--target", WINDOWS_TARGET, "--example", "iocp_loop"]
            ctx.log("$ " + shlex.join(cmd))
            subprocess.run(cmd, cwd=ROOT, check=True)
        shim = ROOT / "target" / "wine-shim" / "bcryptprimitives.dll"
        if not shim.exists():
            shim.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["x86_64-w64-mingw32-gcc", "-shared", "-O2", "-s", "-static-libgcc", "-Wall", "-o",
                            str(shim), str(ROOT / ".ci" / "bcryptprimitives.c"), "-ladvapi32"], check=True, timeout=120)
        prefix = Path(env["WINEPREFIX"])
        if not (prefix / "system.reg").exists():
            ctx.log(f"creating Wine prefix {prefix}")
            prefix.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["wineboot", "--init"], env=env, stdin=subprocess.DEVNULL, timeout=300, check=True)
            subprocess.run(["wineserver", "-w"], env=env, timeout=120)
        if not (exe_dir / "iocp_loop.exe").exists():
            raise OSError(f"{exe_dir / 'iocp_loop.exe'} not built")
        for d in (exe_dir, prefix / "drive_c" / "windows" / "system32"):
            shutil.copyfile(shim, d / "bcryptprimitives.dll")
    except (OSError, subprocess.SubprocessError) as e:
        ctx.say(f"iocp_loop skipped: preparing Wine failed: {e}")
        return None
    def stop():
        try:  # wineserver leaves its parent's process group: stop it through its prefix
            subprocess.run(["wineserver", "-k"], env=env, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            pass

    return Server("iocp_loop", ["wine", exe_dir / "iocp_loop.exe", ANY_PORT, "--threads", "2", "--accepts", "16"],
                  "wine", env=env, top=1000, mark="Wine, correctness only", strace=False, cleanup=stop,
                  start_timeout=120.0,
                  note="iocp_loop runs under Wine 8.0: its figures say that it serves every client "
                       "correctly, not how fast IOCP is (Wine implements IOCP in user space over epoll); "
                       "its syscalls are not counted.")


def stress_help(binary, *sub):
    """`binary [sub] --help`'s text, or None when it fails."""
    try:
        p = subprocess.run([str(binary), *sub, "--help"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout + p.stderr if p.returncode == 0 else None


def udp_support():
    """(why the UDP cases cannot run, or None; the client's extra UDP flags)."""
    has_udp = lambda text: bool(text and re.search(r"--udp\b(?!-)", text))  # noqa: E731
    if not has_udp(stress_help(REL / "echoloop")):
        return "`echoloop --help` has no --udp (the server does not serve UDP yet)", []
    stress = stress_help(STRESS)
    if not has_udp(stress):
        return "`echoloop-stress --help` has no --udp (the stress client does not send UDP yet)", []
    return None, UdpReport.extra_flags(stress)
