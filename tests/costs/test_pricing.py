"""The price book: shipped defaults, GPU model matching, overrides, and bad files named clearly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleetdeck.errors import ConfigError
from fleetdeck.server_lite.pricing import DEFAULTS_PATH, PricingLoader, user_pricing_path

REPO_DEFAULTS = Path(__file__).resolve().parents[2] / "configs" / "pricing.toml"


@pytest.fixture
def defaults(tmp_path: Path) -> PricingLoader:
    return PricingLoader(user=tmp_path / "absent.toml")


def test_shipped_defaults_are_the_documented_config_file() -> None:
    assert DEFAULTS_PATH.read_bytes() == REPO_DEFAULTS.read_bytes()


@pytest.mark.parametrize("name, memory_mib, model", [
    ("NVIDIA H200", 143771, "H200"),  # the recorded nvidia-smi output of the trace machine
    ("NVIDIA H100 80GB HBM3", 81559, "H100"),
    ("NVIDIA H100 PCIe", 81559, "H100"),
    ("NVIDIA A100-SXM4-80GB", 81920, "A100 80GB"),
    ("NVIDIA A100-SXM4-40GB", 40960, "A100 40GB"),
    ("NVIDIA A100-PCIE-40GB", None, "A100 40GB"),  # no memory reported: the size in the name
    ("A100-40GB", None, "A100 40GB"),  # as `fleetdeck fleet add --gpu-model` records it
    ("NVIDIA A100", None, "A100 80GB"),  # nothing to tell: the first A100 entry
    ("NVIDIA L40S", 46068, "L40S"),
    ("NVIDIA L4", 23034, "L4"),
    ("NVIDIA A10G", 23028, "A10G"),
    ("NVIDIA A10", 24564, "A10"),
    ("Tesla T4", 15360, "T4"),
    ("Tesla V100-SXM2-16GB", 16384, "V100 16GB"),
    ("Tesla V100-SXM2-32GB", 32768, "V100 32GB"),
    ("NVIDIA GeForce RTX 4090", 24564, "RTX 4090"),
    ("NVIDIA RTX 6000 Ada Generation", 49140, "RTX 6000 Ada"),
])
def test_nvml_names_map_to_priced_models(defaults: PricingLoader, name: str, memory_mib: int | None,
                                          model: str) -> None:
    found = defaults.load().gpu_model(name, memory_mib)
    assert found is not None and found.name == model


def test_every_default_is_dated_and_priced(defaults: PricingLoader) -> None:
    book = defaults.load()
    assert book.currency == "USD" and book.as_of
    assert all(m.price_per_gpu_hour > 0 for m in book.gpus)
    assert {"H100", "H200", "A100 80GB", "A100 40GB", "L4", "L40S", "A10G", "T4", "V100 16GB", "RTX 4090"} <= {
        m.name for m in book.gpus}


def test_unknown_gpu_gets_the_default_price(defaults: PricingLoader) -> None:
    price = defaults.load().price(gpu_name="NVIDIA Quantum Whatever")
    assert (price.per_gpu_hour, price.source) == (2.00, "default")


def test_price_order_host_then_queue_then_inventory_then_model(tmp_path: Path) -> None:
    user = tmp_path / "pricing.toml"
    user.write_text("[hosts.lab]\nprice_per_gpu_hour = 0.9\n[queues.spot]\nprice_per_gpu_hour = 1.1\n"
                    "[hosts.builder]\nprice_per_hour = 0.4\n")
    book = PricingLoader(user=user).load()
    h100 = "NVIDIA H100 80GB HBM3"
    assert book.price(host="lab", queue="spot", gpu_name=h100, inventory_price=2.0).source == "host lab"
    assert book.price(host="other", queue="spot", gpu_name=h100, inventory_price=2.0).source == "queue spot"
    assert book.price(host="other", queue="x", gpu_name=h100, inventory_price=2.0).per_gpu_hour == 2.0
    assert book.price(host="other", gpu_name=h100).source == "gpu H100"
    # on-premises hosts are never free by accident: no entry means the GPU model's price
    assert book.price(host="my-own-box", gpu_name=h100).per_gpu_hour == 3.00
    assert book.price(host="builder").per_host_hour == 0.4
    assert book.price(host="other", inventory_host_hour=0.25).per_host_hour == 0.25
    assert book.gpu_model("NVIDIA H200") is not None  # the user's file kept every default model


def test_user_file_is_found_by_env_then_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert user_pricing_path() == tmp_path / "xdg" / "fleetdeck" / "pricing.toml"
    monkeypatch.setenv("FLEETDECK_PRICING", str(tmp_path / "mine.toml"))
    assert user_pricing_path() == tmp_path / "mine.toml"


def test_a_changed_user_file_is_reloaded(tmp_path: Path) -> None:
    user = tmp_path / "pricing.toml"
    user.write_text("[gpus.H100]\nprice_per_gpu_hour = 2.25\n")
    loader = PricingLoader(user=user)
    assert loader.load().price(gpu_name="NVIDIA H100 80GB HBM3").per_gpu_hour == 2.25
    user.write_text("[gpus.H100]\nprice_per_gpu_hour = 1.875\n")
    os.utime(user, ns=(1, 1))  # a different mtime even on coarse clocks
    assert loader.load().price(gpu_name="NVIDIA H100 80GB HBM3").per_gpu_hour == 1.875
    user.unlink()
    assert loader.load().price(gpu_name="NVIDIA H100 80GB HBM3").per_gpu_hour == 3.00


@pytest.mark.parametrize("text, message", [
    ("[gpus.H100\n", "is not valid TOML"),
    ("[gpus.H100]\nprice_per_gpu_hour = -1\n", "gpus.H100: price_per_gpu_hour must be a number >= 0, got -1"),
    ("[hosts.lab]\nprice_per_gpu_hour = 'cheap'\n", "hosts.lab: price_per_gpu_hour must be a number >= 0"),
    ("[hosts.lab]\nprice = 1\n", "hosts.lab: unknown key 'price' (allowed: price_per_gpu_hour, price_per_hour)"),
    ("[queues.spot]\nprice_per_hour = 1\n", "queues.spot: unknown key 'price_per_hour'"),
    ("[waste]\nutil_threshold_percent = 150\n", "waste.util_threshold_percent must be at most 100"),
    ("[gpus.X]\nmatch = 'X'\n", "gpus.X.match must be a list of non-empty strings"),
    ("hosts = 3\n", "hosts must be a table"),
])
def test_bad_user_files_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    user = tmp_path / "pricing.toml"
    user.write_text(text)
    with pytest.raises(ConfigError) as info:
        PricingLoader(user=user).load()
    assert str(user) in str(info.value)
    assert message in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_waste_policy_comes_from_the_book(tmp_path: Path) -> None:
    user = tmp_path / "pricing.toml"
    user.write_text("[waste]\nutil_threshold_percent = 20\nwindow_minutes = 40\norphan_min_mib = 2048\n")
    policy = PricingLoader(user=user).load().waste
    assert (policy.util_threshold_percent, policy.window_s, policy.orphan_min_mib) == (20, 2400, 2048)
