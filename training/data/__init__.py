"""Data for training: corpora and dataset preparation (`corpora`), tokenizers (`tokenizer`) and the objectives'
batch builders (`objectives`)."""

# The training objectives (paper Eq. 5 and the copy objectives), named here so that the command line can offer them without loading torch.
OBJECTIVES = ("clm", "copy", "blank_copy", "combined", "autoencode")
