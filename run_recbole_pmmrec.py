"""Train and evaluate PMMRec or any RecBole model, with RecBole's command-line conventions.

    python run_recbole_pmmrec.py --model=PMMRec --dataset=ml-100k
    python run_recbole_pmmrec.py --model=SASRec --dataset=ml-100k --epochs=1
    python run_recbole_pmmrec.py --model=PMMRec --dataset=NAME --config_files="a.yaml b.yaml" --key=value

Every other ``--key=value`` is a config override (RecBole reads them from the command line).
"""

from recbole_pmmrec.cli import main

if __name__ == "__main__":
    main()
