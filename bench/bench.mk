# The make -j4 alternative for W1/W2: the same command, the same files.
# Used as: make -r -j4 -f bench.mk N=10000 (in the workspace).
N ?= 10000
OUTS := $(patsubst %,data/%.jsonl.zst,$(shell seq $(N)))

all: $(OUTS)
.PHONY: all
.DELETE_ON_ERROR:

data/%.jsonl.zst:
	sh item.sh $* | zstd -q > $@
