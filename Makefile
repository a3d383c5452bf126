# The two commands of the README. Both do the whole set-up first (idempotent; see tools/setup.sh).
.PHONY: setup demo test test-fast lint bench train-demo train-vit-demo train-mil-demo train-vlm-demo train-seg-demo

VENV := .venv/bin

setup:
	bash tools/setup.sh

# Opens napari with the H&E sample, the bundled model and the Grad-CAM dock, and explains once.
# Without a display it runs under a virtual X server and saves demo-screenshot.png instead.
demo: setup
	@if [ -n "$$DISPLAY" ]; then \
		$(VENV)/napari-gradcam demo; \
	else \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(VENV)/napari-gradcam demo --screenshot demo-screenshot.png \
		&& echo "no display: saved the window to demo-screenshot.png"; \
	fi

# The whole suite (GUI tests under Xvfb via pytest-xvfb) plus lint (ruff, a size report for information,
# import cycles, names defined twice); then the tests on real timm architectures in
# .venv-timm (torchvision + timm; see tools/setup.sh).
test: setup lint
	$(VENV)/python -m pytest -q -m "not timm"
	.venv-timm/bin/python -m pytest -q -m timm -p no:xvfb -o addopts=--import-mode=importlib \
		-W "ignore::pytest.PytestConfigWarning"

# While you work: the core, models, slides, review, training and CLI, without the tests marked gui
# (Qt and napari; tests/conftest.py marks them), slow (real-data localisation, long slide runs,
# fuzzing, crash runs, reference sums) or timm, on two worker processes and without loading the
# GUI test plugins. About 75 s on 2 cores.
FAST_PLUGINS := -p no:napari -p no:npe2 -p no:napari-plugin-engine -p no:pytest-qt -p no:xvfb
test-fast: setup
	$(VENV)/python -m pytest -q -m "not gui and not slow and not timm" -n 2 --ignore=tests/_napari \
		-o addopts=--import-mode=importlib $(FAST_PLUGINS)

lint: setup
	$(VENV)/ruff check napari_gradcam tests benchmarks tools
	$(VENV)/ruff format --check napari_gradcam tests benchmarks tools
	$(VENV)/python tools/size_report.py napari_gradcam benchmarks tools
	$(VENV)/python tools/import_cycles.py --typing napari_gradcam
	$(VENV)/python tools/duplicate_names.py

# Side-by-side ratios; captum and torchcam are installed as references when missing.
# Slides (several minutes): python benchmarks/bench_slides.py
bench: setup
	$(VENV)/pip install -q -c constraints.txt -e ".[bench]"
	$(VENV)/python benchmarks/bench_explain.py
	$(VENV)/python benchmarks/bench_methods.py

train-demo: setup
	$(VENV)/python -m napari_gradcam.training.train_demo

train-vit-demo: setup
	$(VENV)/python -m napari_gradcam.training.train_vit_demo

train-mil-demo: setup
	$(VENV)/python -m napari_gradcam.training.train_mil_demo

train-vlm-demo: setup
	$(VENV)/python -m napari_gradcam.training.train_vlm_demo

train-seg-demo: setup
	$(VENV)/python -m napari_gradcam.training.train_seg_demo
