from pathlib import Path

from napari_gradcam.user_state import (
    error_log_path,
    log_unexpected_error,
    state_dir,
    unexpected_error_message,
)


def test_state_dir_follows_xdg_and_the_override(tmp_path, monkeypatch):
    monkeypatch.delenv("NAPARI_GRADCAM_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "napari-gradcam"
    monkeypatch.setenv("NAPARI_GRADCAM_STATE_DIR", str(tmp_path / "mine"))
    assert state_dir() == tmp_path / "mine"


def test_an_unexpected_error_is_logged_with_its_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_GRADCAM_STATE_DIR", str(tmp_path))
    try:
        {}["missing"]
    except KeyError as err:
        message = unexpected_error_message(err, "explain scan.png")
    assert str(error_log_path()) in message
    assert "KeyError" in message
    logged = error_log_path().read_text()
    assert "explain scan.png" in logged
    assert "Traceback" in logged and "missing" in logged


def test_an_unwritable_log_still_gives_a_message(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NAPARI_GRADCAM_STATE_DIR", str(blocker / "sub"))
    assert log_unexpected_error(ValueError("x"), "testing") is None
    assert "Python log" in unexpected_error_message(ValueError("x"), "testing")


def test_a_full_log_is_rotated(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_GRADCAM_STATE_DIR", str(tmp_path))
    monkeypatch.setattr("napari_gradcam.user_state.ERROR_LOG_MAX_BYTES", 10)
    error_log_path().write_text("x" * 100)
    path = log_unexpected_error(RuntimeError("boom"), "testing")
    assert path == error_log_path()
    assert Path(str(path) + ".1").read_text() == "x" * 100
    assert "boom" in path.read_text()
