"""The paper's figures and the artistic controls' figures, with the checks of what each shows."""
