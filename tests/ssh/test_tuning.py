"""The algorithm order every golem SSH connection offers (requestor/ssh/tuning.py)."""

from __future__ import annotations

from requestor.ssh import tuning

X86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme sse2 aes avx2\n\n"
X86_NO_AES = "processor\t: 0\nflags\t\t: fpu vme sse2 avx2\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"


def test_cpuinfo_is_read_for_aes_on_x86_and_arm() -> None:
    assert tuning._cpuinfo_has_aes(X86) is True
    assert tuning._cpuinfo_has_aes(X86_NO_AES) is False
    assert tuning._cpuinfo_has_aes(ARM) is True
    assert tuning._cpuinfo_has_aes("processor\t: 0\n") is None


def test_aes_gcm_first_with_aes_instructions_chacha_first_without() -> None:
    with_aes = tuning.encryption_algs(has_aes=True)
    assert with_aes[:3] == [
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
    ]
    without = tuning.encryption_algs(has_aes=False)
    assert without[0] == "chacha20-poly1305@openssh.com"
    # Preferences only: every cipher asyncssh enables by default is still offered.
    assert sorted(with_aes) == sorted(without)


def test_options_never_drop_what_asyncssh_would_offer() -> None:
    from asyncssh.encryption import get_default_encryption_algs
    from asyncssh.mac import get_default_mac_algs

    options = tuning.connect_options()
    defaults = {name.decode() for name in get_default_encryption_algs()}
    assert set(options["encryption_algs"]) == defaults  # type: ignore[arg-type]
    macs = {name.decode() for name in get_default_mac_algs()}
    assert set(options["mac_algs"]) == macs  # type: ignore[arg-type]
    assert options["compression_algs"] == ["none"]


def test_requests_in_flight_follow_the_servers_block_size() -> None:
    # A server without the limits extension gets 16 KiB blocks: still 2 MiB in flight.
    assert tuning.sftp_max_requests(16 * 1024) == 128
    assert tuning.sftp_max_requests(255 * 1024) == 128
    assert tuning.sftp_max_requests(1024 * 1024) == 32
    assert tuning.sftp_max_requests(4 * 1024 * 1024) == 8
    assert tuning.sftp_max_requests(64 * 1024 * 1024) == 8
