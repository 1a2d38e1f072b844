"""Shared fixtures: one setup per session, the shipped models loaded once."""

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
