# Two commands from a fresh clone (see README "Quick start"):
#   make run    install into .venv (once), train PMMRec on the bundled ml-100k (~10 min on 2 CPU cores) and
#               print the top 5 for three of its users
#   make test   install into .venv (once) and run the test suite (< 15 min on 2 CPU cores)
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test bench clean

install: $(STAMP)

# torch first and pinned exactly, so pip takes the local wheels; then the rest under the constraints.
$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -c constraints.txt -e ".[test,bench]"
	$(PY) -c "import recbole_pmmrec, recbole, timm, transformers"
	touch $(STAMP)

# RecBole always reads its own copy of ml-100k (inside the recbole wheel), whatever data_path says
RECBOLE_DATA = $$($(PY) -c "import os, recbole; print(os.path.join(os.path.dirname(recbole.__file__), 'dataset_example'))")

run: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) run_recbole_pmmrec.py --model=PMMRec --dataset=ml-100k --epochs=30 \
		--save_pretrained=auto
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m recbole_pmmrec.recommend \
		--model_file=saved/PMMRec-ml-100k-pretrained --data_path=$(RECBOLE_DATA) --users=1,2,3 --k=5

test: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

bench: install  # make bench BENCH="all --data-dir /tmp/pmmrec_data --seeds 3" (hours on 2 cores); default: the report only
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) bench/run.py $(or $(BENCH),report)

clean:
	rm -rf log log_tensorboard saved
