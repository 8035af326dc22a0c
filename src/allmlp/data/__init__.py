"""Data sets: image readers (IDX, CIFAR-10) and text corpora, cached outside the source tree."""
