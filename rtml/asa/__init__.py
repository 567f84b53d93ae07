"""The feature windows as an Azure Stream Analytics job (`infra/asa/`), and a reference model
of ASA's documented window semantics to compare rtml's Quix windows with. ASA itself does
not run here."""
