"""Algorithm preferences and SFTP sizes for every golem SSH connection.

asyncssh's own first choice is chacha20-poly1305. asyncssh drives it through
``cryptography`` one packet at a time with separate ChaCha20 and Poly1305
calls, and a 200 MB copy took 2.3 s with it against 0.7 s with
aes128-gcm@openssh.com on this project's 2-core benchmark machine (AES-NI
present). With AES instructions AES-GCM is both faster and constant-time, so it
goes first; without them chacha20-poly1305 stays first, as OpenSSH orders them,
because table-driven AES is slow and leaks timing. The server still has to
agree: these are preferences, and every algorithm asyncssh enables by default
stays on the lists, after ours.
"""

from __future__ import annotations

import functools
import platform
import sys

# SFTP: asyncssh sizes each read/write request from the server's limits
# extension when block_size is -1: 4 MiB from asyncssh servers, about 255 KiB
# from OpenSSH 8.6+, 16 KiB assumed from a server without the extension. Big
# requests mean fewer round trips and fewer Python-level tasks per megabyte.
SFTP_BLOCK_SIZE = -1  # the server's advertised maximum (asyncssh's own rule)
# How much to keep in flight: enough to cover a long round trip, in as few
# requests as the block size allows. The old fixed 128 requests meant 512 MiB
# of 4 MiB blocks queued at once: 200 MB up cost the client 1.41 s of CPU on the
# devnet against 0.38 s with 8 (both with aes128-gcm).
SFTP_BYTES_IN_FLIGHT = 32 * 1024 * 1024
_MIN_REQUESTS, _MAX_REQUESTS = 8, 128  # asyncssh caps at 128 itself


def sftp_max_requests(block_size: int) -> int:
    """Requests in flight for blocks of ``block_size`` (the server's limit for the
    direction): 8 of 4 MiB, 32 of 1 MiB, 128 of 256 KiB or less."""
    wanted = SFTP_BYTES_IN_FLIGHT // max(block_size, 1)
    return max(_MIN_REQUESTS, min(_MAX_REQUESTS, wanted))


# Channels: what we let the VM send before it waits for us (window), and in
# how large SSH packets (max_pktsize). asyncssh's 2 MiB / 32 KiB mean a window
# adjust every megabyte and one decrypt, one Python-level packet per 32 KiB.
# 128 KiB packets cut both sides' CPU per megabyte of a download by about a
# quarter on the devnet (client 0.43 -> 0.33 s, server 0.44 -> 0.34 s for 200
# MB) and stay under the 256 KiB packet size OpenSSH accepts; 8 MiB of window
# lets a download over a 100 ms link reach 80 MB/s rather than 20. Uploads are
# sized by the server's own choice of these two, not ours.
CHANNEL_WINDOW = 8 * 1024 * 1024
CHANNEL_MAX_PACKET = 128 * 1024

# How many files of a tree are copied at once: small files cost round trips
# (open, write, close, setstat), not bandwidth, so overlapping them is what
# makes a tree fast. Bounded so a huge tree does not open thousands of handles.
TREE_CONCURRENCY = 16
# Below this a file is read or written whole (open, its data in requests of the
# server's block size -- one, on the devnet -- close; one progress report); at
# or above it asyncssh's pipelined get/put stream it in blocks, with a progress
# report per block and asyncssh's extra stat round trips. Not above the 1 MiB from which
# `golem vm cp` draws a progress bar, so every file that had a bar keeps it.
SMALL_FILE = 1024 * 1024

_AEAD_AES = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
_CHACHA = ("chacha20-poly1305@openssh.com",)
_AES_CTR = ("aes128-ctr", "aes192-ctr", "aes256-ctr")
# For the ciphers that need a separate MAC: encrypt-then-MAC, the OpenSSL-backed
# HMACs first (umac needs an optional library asyncssh may not find).
_MACS = (
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "umac-128-etm@openssh.com",
    "umac-64-etm@openssh.com",
)
# Compression costs CPU on both ends for data that is usually compressed
# already (archives, images) or crosses a fast link. "none" only: every server
# must support it (RFC 4253, 6.2).
COMPRESSION_ALGS = ("none",)


def _cpuinfo_has_aes(text: str) -> bool | None:
    """Whether /proc/cpuinfo lists AES instructions: ``flags`` on x86, ``Features`` on ARM."""
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() in ("flags", "Features"):
            return "aes" in value.split()
    return None


@functools.cache
def cpu_has_aes() -> bool:
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
                # The first processor's block is enough: all cores are alike.
                found = _cpuinfo_has_aes(handle.read(16384))
        except OSError:
            found = None
        if found is not None:
            return found
    # No cpuinfo to read (macOS, Windows, a sandbox): every 64-bit x86 and ARM
    # CPU of the last decade has AES instructions.
    return platform.machine().lower() in ("x86_64", "amd64", "arm64", "aarch64")


def _ordered(preferred: tuple[str, ...], available: list[bytes]) -> list[str]:
    """``preferred`` first (those asyncssh supports here), then asyncssh's others in its order."""
    names = [name.decode("ascii") for name in available]
    first = [name for name in preferred if name in names]
    return first + [name for name in names if name not in first]


def encryption_algs(has_aes: bool | None = None) -> list[str]:
    from asyncssh.encryption import get_default_encryption_algs

    aes = cpu_has_aes() if has_aes is None else has_aes
    preferred = _AEAD_AES + _CHACHA if aes else _CHACHA + _AEAD_AES
    return _ordered(preferred + _AES_CTR, get_default_encryption_algs())


def mac_algs() -> list[str]:
    from asyncssh.mac import get_default_mac_algs

    return _ordered(_MACS, get_default_mac_algs())


def connect_options() -> dict[str, object]:
    """Keyword arguments for ``asyncssh.connect``: algorithms and channel sizes."""
    return {
        "encryption_algs": encryption_algs(),
        "mac_algs": mac_algs(),
        "compression_algs": list(COMPRESSION_ALGS),
        "window": CHANNEL_WINDOW,
        "max_pktsize": CHANNEL_MAX_PACKET,
    }
