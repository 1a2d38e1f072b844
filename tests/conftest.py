"""Shared fixtures: one setup per session, the shipped models loaded once."""

import keras
import pytest

import course_utils as cu


@pytest.fixture(scope="session", autouse=True)
def _course_setup():
    cu.setup(seed=0)


@pytest.fixture(scope="session")
def course_model():
    return cu.load_course_model("shapes_cnn")


@pytest.fixture(scope="session")
def cue_model():
    return cu.load_course_model("shapes_cnn_cue")


@pytest.fixture(scope="session")
def lite0_net():
    """EfficientNet-Lite0 with its ImageNet weights, as cu.load_imagenet_model gives it (converted
    from the weights package), built once per session."""
    return cu.load_imagenet_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def cnn():
    """The course CNN, untrained (identities that hold for any weights are tested on it)."""
    keras.utils.set_random_seed(0)
    return cu.models.build_course_cnn()


@pytest.fixture(scope="module")
def shapes():
    """Four fresh test images."""
    return cu.make_shapes(4, seed=100)


def pytest_addoption(parser):
    parser.addoption("--zoo", action="store_true",
                     help="run the whole model zoo (tests marked zoo; make test-zoo)")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``zoo`` (the slow part of tests/test_zoo.py) run only with --zoo."""
    if config.getoption("--zoo"):
        return
    skip = pytest.mark.skip(reason="the full model zoo: make test-zoo (pytest --zoo)")
    for item in items:
        if "zoo" in item.keywords:
            item.add_marker(skip)
