"""Every model of the potts_ebm experiment as a THRML block-Gibbs program (Extropic's THRML,
the seed's sampler), so THRML samples the very models our samplers sample.

- Lattice Potts models (``potts``, ``potts_cond``): one ``CategoricalNode`` per pixel in two
  checkerboard blocks, a ``CategoricalEBMFactor`` per colour for the biases and one per
  edge direction for the couplings (w * identity over the two levels). The class of
  ``potts_cond`` is a clamped 10-state node joined to every pixel by a factor whose table
  is that pixel's (class, level) bias. This is the idiomatic THRML form, the one the seed
  and sampler_bench time; factor weights are log-potentials (-energy).
- RBMs (``rbm``, ``rbm_cond``): one node per layer, whose state is the whole layer (784
  levels; H hidden bits), two blocks (hidden, then visible) and dense interactions with
  conditional samplers for p(h | v, y) and p(v | h). A per-edge factor graph of 392,000
  pair factors samples the same distribution but ~200 times slower (XLA gathers), so the
  layer form is what makes THRML usable here; it is still THRML's block-Gibbs machinery
  (blocks, interaction groups, schedule, clamping).
- A DBN's top-level RBM (``DBNTopGraph``): the same layer form, its binary penultimate layer
  being a 2-level visible layer, and a label node that is clamped (class-conditional
  samples) or a free block drawn from softmax(d + U h) (unconditional samples). Only the
  top-level block Gibbs runs in THRML; the up-pass that starts it and the directed
  top-down pass after it are the DBN's own (torch).
- One step of a denoising chain of conditional RBMs (``DTMStepGraph``, :mod:`rgbench.models.dtm`):
  the categorical RBM's layer form plus the conditioning image x_i as a clamped visible
  layer joined to the free one by the fixed diagonal coupling J [x_{i-1,s} = x_{i,s}], and
  the label clamped when the RBM has one. One program (J a parameter) serves every step.

Programs are built inside jitted functions from parameter arrays, so one compilation
serves every seed of a model (same shapes); THRML's own jit of a program is the cost that
dominates short runs. ``configure_jax`` pins XLA to the job's threads and must run before
jax is first imported.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch.nn as nn

from rgbench.data.preprocess import LEVELS
from rgbench.models.potts import PottsModel
from rgbench.models.rbm import CategoricalRBM

if TYPE_CHECKING:
    from rgbench.models.dbn import DBN


def configure_jax(threads: int = 1) -> None:
    """Pin XLA's CPU client to one thread when the rule has one (``threads`` = 1); with more
    threads XLA's own default (all cores) stands. A no-op once jax has been imported, so
    call it first.

    XLA reads ``intra_op_parallelism_threads=1`` only beside
    ``--xla_cpu_multi_thread_eigen=false``; written alone it is taken for a file name and
    XLA aborts, so nothing is written for more threads."""
    if "jax" in sys.modules or threads != 1:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1".strip()


def clamped_labels(conditional: bool, labels: np.ndarray | None, chains: int) -> list[np.ndarray]:
    """The clamped blocks' states: each chain's label (a class-conditional model), or none."""
    if not conditional:
        return []
    if labels is None:
        raise ValueError("a class-conditional model needs labels")
    return [np.asarray(labels, dtype=np.uint8).reshape(chains, 1)]


# ----------------------------------------------------------------------------- lattice Potts

class LatticeFactorGraph:
    """A (height, width) 4-level Potts lattice (optionally with a clamped class node) as THRML
    nodes and checkerboard blocks; :meth:`program` adds parameters."""

    def __init__(self, height: int, width: int, classes: int = 1) -> None:
        from thrml import Block, CategoricalNode

        self.height, self.width, self.classes = height, width, classes
        sites = height * width
        self.nodes = [CategoricalNode() for _ in range(sites)]
        colour = np.array([(i // width + i % width) % 2 for i in range(sites)])
        self.order = [np.flatnonzero(colour == c) for c in (0, 1)]  # site index of each block position
        self.blocks = [Block([self.nodes[i] for i in order]) for order in self.order]
        self.horizontal = [(i, i + 1) for i in range(sites) if i % width < width - 1]
        self.vertical = [(i, i + width) for i in range(sites - width)]
        self.label = CategoricalNode() if classes > 1 else None
        self.label_block = Block([self.label]) if self.label is not None else None

    def factors(self, bias: Any, w_h: Any, w_v: Any) -> list:
        """``bias`` (K, sites, 4), couplings as scalars; jnp arrays or tracers."""
        import jax.numpy as jnp
        from thrml import Block
        from thrml.models.discrete_ebm import CategoricalEBMFactor

        factors = []
        for order, block in zip(self.order, self.blocks):
            if self.label is None:
                factors.append(CategoricalEBMFactor([block], bias[0, order]))
            else:  # table[i, y, l] = bias[y, i, l]
                labels = Block([self.label] * len(order))
                factors.append(CategoricalEBMFactor([labels, block], jnp.moveaxis(bias[:, order], 0, 1)))
        eye = jnp.eye(LEVELS, dtype=bias.dtype)
        for weight, pairs in ((w_h, self.horizontal), (w_v, self.vertical)):
            left = Block([self.nodes[a] for a, _ in pairs])
            right = Block([self.nodes[b] for _, b in pairs])
            factors.append(CategoricalEBMFactor([left, right], jnp.broadcast_to(weight * eye, (len(pairs), LEVELS, LEVELS))))
        return factors

    def program(self, bias: Any, w_h: Any, w_v: Any) -> Any:
        from thrml import BlockGibbsSpec, FactorSamplingProgram
        from thrml.models.discrete_ebm import CategoricalGibbsConditional

        clamped = [self.label_block] if self.label_block is not None else []
        spec = BlockGibbsSpec(self.blocks, clamped)
        samplers = [CategoricalGibbsConditional(LEVELS) for _ in self.blocks]
        return FactorSamplingProgram(spec, samplers, self.factors(bias, w_h, w_v), [])

    def to_state(self, images: np.ndarray, rng: np.random.Generator | None = None) -> list[np.ndarray]:
        """(C, H, W) levels -> the free blocks' states [(C, n_block)] uint8 (``rng``: unused,
        every block is pixels; the RBM's graph draws its hidden start from it)."""
        flat = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
        return [np.ascontiguousarray(flat[:, order]) for order in self.order]

    def to_images(self, state: list[Any]) -> np.ndarray:
        blocks = [np.asarray(s) for s in state]
        flat = np.zeros((blocks[0].shape[0], self.height * self.width), dtype=np.uint8)
        for order, values in zip(self.order, blocks):
            flat[:, order] = values
        return flat.reshape(-1, self.height, self.width)

    def clamp(self, labels: np.ndarray | None, chains: int) -> list[np.ndarray]:
        return clamped_labels(self.label is not None, labels, chains)

    def energy(self, images: np.ndarray, bias: Any, w_h: Any, w_v: Any, labels: np.ndarray | None = None) -> np.ndarray:
        """THRML's energy (FactorizedEBM.energy) of each image, in the parameters' dtype."""
        import jax
        from thrml.models.ebm import FactorizedEBM

        ebm = FactorizedEBM(self.factors(bias, w_h, w_v))
        blocks = list(self.blocks) + ([self.label_block] if self.label_block is not None else [])
        state = self.to_state(images) + self.clamp(labels, len(images))
        return np.asarray(jax.vmap(lambda *s: ebm.energy(list(s), blocks))(*state))


# ----------------------------------------------------------------------------- RBMs

@dataclass(frozen=True)
class _LayerClasses:
    """The layer form's THRML classes (see :func:`_rbm_classes`)."""
    visible_layer: type  # node: a whole visible layer, state (sites,) levels
    hidden_layer: type  # node: a whole hidden layer, state (H,) bits
    visible_to_hidden: type  # interaction: W and c, read by the hidden layer
    hidden_to_visible: type  # interaction: W^T and b, read by the visible layer
    label_to_hidden: type  # interaction: U, read by the hidden layer from a (clamped or free) label
    hidden_to_label: type  # interaction: U^T and d, read by a free label
    condition_to_visible: type  # interaction: J, read by the visible layer from a clamped image
    hidden_sampler: type
    visible_sampler: type
    label_sampler: type


def _rbm_classes() -> _LayerClasses:
    """THRML node, interaction and sampler classes of the layer-form RBMs (defined on first
    use so that importing this module never imports jax).

    A visible layer has ``levels`` states per site in the reference gauge (level 0 has no
    weights). The categorical RBMs use 4 levels; a Bernoulli layer (the DBN's penultimate
    layer) is the 2-level case: one_hot(v, 2)[:, 1:] is v itself and softmax(0, a) puts
    sigmoid(a) on level 1, so the same samplers serve both and one set of code is tested."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    from thrml import AbstractConditionalSampler, AbstractNode

    class VisibleLayer(AbstractNode):
        """All visible units; its state is the (sites,) vector of levels."""

    class HiddenLayer(AbstractNode):
        """All hidden units; its state is the (H,) vector of bits."""

    class VisibleToHidden(eqx.Module):
        """Input of the hidden layer from the visible one: weights (1, sites * (levels - 1), H)
        in the reference gauge (level 0 has no row) and the hidden bias (1, H)."""
        weight: jax.Array
        bias: jax.Array

    class HiddenToVisible(eqx.Module):
        """Input of the visible layer from the hidden one: weights (1, H, sites * (levels - 1))
        and the visible bias (1, sites * (levels - 1))."""
        weight: jax.Array
        bias: jax.Array

    class LabelToHidden(eqx.Module):
        """Input of the hidden layer from a label node (clamped or free): U (1, K, H)."""
        weight: jax.Array

    class HiddenToLabel(eqx.Module):
        """Input of a free label from the hidden layer: U^T (1, H, K) and the label bias (1, K)."""
        weight: jax.Array
        bias: jax.Array

    class ConditionToVisible(eqx.Module):
        """Input of the visible layer from a clamped image c of the same sites: the diagonal
        coupling J [v_i = c_i] (J of shape (1,)), in the reference gauge
        J ([l = c_i] - [c_i = 0]) on the levels l above 0."""
        coupling: jax.Array

    class HiddenConditional(AbstractConditionalSampler):
        """h_j ~ Bernoulli(sigmoid(c_j + sum_i W_i[v_i, j] + U_yj)), the visible layer having
        ``levels`` levels per site."""
        levels: int

        def sample(self, key, interactions, active_flags, states, sampler_state, output_sd):
            act = None
            for interaction, state in zip(interactions, states):
                tail = state[0][0, 0]  # one head node, one interaction of this group
                if isinstance(interaction, VisibleToHidden):
                    weight = interaction.weight[0, 0]
                    onehot = jax.nn.one_hot(tail, self.levels, dtype=weight.dtype)[:, 1:].reshape(-1)
                    term = onehot @ weight + interaction.bias[0, 0]
                else:
                    term = interaction.weight[0, 0][tail]
                act = term if act is None else act + term
            bits = jax.random.bernoulli(key, jax.nn.sigmoid(act))
            return bits.astype(output_sd.dtype)[None], sampler_state

    class VisibleConditional(AbstractConditionalSampler):
        """v_i ~ softmax over levels of (0, b_i1 + W_i1 h, ..., b_i(L-1) + W_i(L-1) h); for
        2 levels, v_i ~ Bernoulli(sigmoid(b_i + W_i h)). A clamped image c (a DTM step) adds
        J ([l = c_i] - [c_i = 0]) to level l's logit."""
        sites: int
        levels: int

        def sample(self, key, interactions, active_flags, states, sampler_state, output_sd):
            partial = None
            for interaction, state in zip(interactions, states):
                tail = state[0][0, 0]  # one head node, one interaction of this group
                if isinstance(interaction, ConditionToVisible):
                    coupling = interaction.coupling[0, 0]
                    onehot = jax.nn.one_hot(tail, self.levels, dtype=coupling.dtype)
                    term = coupling * (onehot[:, 1:] - onehot[:, :1])
                else:
                    weight = interaction.weight[0, 0]
                    term = (tail.astype(weight.dtype) @ weight + interaction.bias[0, 0]).reshape(
                        self.sites, self.levels - 1)
                partial = term if partial is None else partial + term
            logits = jnp.concatenate([jnp.zeros((self.sites, 1), partial.dtype), partial], axis=1)
            levels = jax.random.categorical(key, logits, axis=-1)
            return levels.astype(output_sd.dtype)[None], sampler_state

    class LabelConditional(AbstractConditionalSampler):
        """A free label: y ~ softmax_y(d_y + sum_j U_yj h_j)."""

        def sample(self, key, interactions, active_flags, states, sampler_state, output_sd):
            interaction, state = interactions[0], states[0]
            weight = interaction.weight[0, 0]
            hidden = state[0][0, 0].astype(weight.dtype)
            label = jax.random.categorical(key, hidden @ weight + interaction.bias[0, 0])
            return label.astype(output_sd.dtype)[None], sampler_state

    return _LayerClasses(VisibleLayer, HiddenLayer, VisibleToHidden, HiddenToVisible, LabelToHidden, HiddenToLabel,
                         ConditionToVisible, HiddenConditional, VisibleConditional, LabelConditional)


class RBMLayerGraph:
    """A categorical RBM (optionally with a clamped label) as two THRML layer nodes."""

    def __init__(self, sites: int, hidden: int, classes: int = 0) -> None:
        import jax
        import jax.numpy as jnp
        from thrml import Block, CategoricalNode
        from thrml.pgm import DEFAULT_NODE_SHAPE_DTYPES

        self._kinds = _rbm_classes()
        self.sites, self.hidden, self.classes = sites, hidden, classes
        self.visible_node, self.hidden_node = self._kinds.visible_layer(), self._kinds.hidden_layer()
        self.visible_block, self.hidden_block = Block([self.visible_node]), Block([self.hidden_node])
        self.label_block = Block([CategoricalNode()]) if classes else None
        self.shapes = dict(DEFAULT_NODE_SHAPE_DTYPES)
        self.shapes[self._kinds.visible_layer] = jax.ShapeDtypeStruct((sites,), jnp.uint8)
        self.shapes[self._kinds.hidden_layer] = jax.ShapeDtypeStruct((hidden,), jnp.uint8)

    def program(self, weight: Any, visible_bias: Any, hidden_bias: Any, label_weight: Any | None = None) -> Any:
        """weight (sites * 3, H), visible_bias (sites * 3,), hidden_bias (H,), label_weight (K, H)."""
        groups, clamped = self._rbm_groups(weight, visible_bias, hidden_bias, label_weight)
        return self._sampling_program(groups, clamped)

    def _rbm_groups(self, weight: Any, visible_bias: Any, hidden_bias: Any, label_weight: Any | None,
                    ) -> tuple[list, list]:
        """The RBM's interaction groups and clamped blocks (the label's, if any)."""
        from thrml import InteractionGroup

        kinds = self._kinds
        groups = [InteractionGroup(kinds.visible_to_hidden(weight[None], hidden_bias[None]), self.hidden_block,
                                   [self.visible_block]),
                  InteractionGroup(kinds.hidden_to_visible(weight.T[None], visible_bias[None]), self.visible_block,
                                   [self.hidden_block])]
        clamped = []
        if self.label_block is not None:
            groups.append(InteractionGroup(kinds.label_to_hidden(label_weight[None]), self.hidden_block,
                                           [self.label_block]))
            clamped = [self.label_block]
        return groups, clamped

    def _sampling_program(self, groups: list, clamped: list) -> Any:
        """Two free blocks, hidden then visible (one sweep: h | v, ...; then v | h, ...)."""
        from thrml import BlockGibbsSpec, BlockSamplingProgram

        spec = BlockGibbsSpec([self.hidden_block, self.visible_block], clamped, self.shapes)
        samplers = [self._kinds.hidden_sampler(LEVELS), self._kinds.visible_sampler(self.sites, LEVELS)]
        return BlockSamplingProgram(spec, samplers, groups)

    @property
    def blocks(self) -> list:
        return [self.hidden_block, self.visible_block]

    def to_state(self, images: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """(C, H, W) levels -> [hidden (C, 1, H) random bits, visible (C, 1, sites)]; the
        first sweep draws h from v, so the hidden start is never read."""
        chains = len(images)
        return [rng.integers(0, 2, size=(chains, 1, self.hidden), dtype=np.uint8),
                np.asarray(images, dtype=np.uint8).reshape(chains, 1, self.sites)]

    def to_images(self, state: list[Any], height: int, width: int) -> np.ndarray:
        return np.asarray(state[1]).reshape(-1, height, width).astype(np.uint8)

    def clamp(self, labels: np.ndarray | None, chains: int) -> list[np.ndarray]:
        return clamped_labels(self.label_block is not None, labels, chains)


class DTMStepGraph(RBMLayerGraph):
    """One step of a denoising chain of conditional RBMs (:class:`rgbench.models.dtm.DTM`):
    a categorical RBM's layer form (free hidden and visible layers x_{i-1}, the label
    clamped when the RBM has one) plus the conditioning image x_i, a clamped visible layer
    joined to the free one by the fixed per-pixel coupling J [x_{i-1,s} = x_{i,s}]. A sweep
    is ``DTM.denoise``'s: h | x_{i-1}, y; then x_{i-1} | h, x_i.

    Why x_i is a clamped block with a diagonal coupling, not per-chain level potentials:
    every chain has its own x_i, and THRML's clamped blocks are exactly its per-chain fixed
    inputs (vmapped with the free state), while a program's parameters are shared by all
    chains. The clamped layer is also the model's own reading (x_i is a variable of the
    joint p(x_{i-1}, h | x_i, y), held fixed), and J enters as a traced parameter, so one
    compiled program serves all T steps (each with its RBM and J_i) and both passes. The
    coupling is read by the generalised visible sampler (:func:`_rbm_classes`) as
    J ([l = x_{i,s}] - [x_{i,s} = 0]) on levels l >= 1: ``DTM.coupling_logits``'s
    reference-gauge form."""

    def __init__(self, sites: int, hidden: int, classes: int = 0) -> None:
        from thrml import Block

        if sites < 1 or hidden < 1 or not 0 <= classes <= 256:
            raise ValueError(f"invalid DTM step sizes: sites={sites}, hidden={hidden}, classes={classes}")
        super().__init__(sites, hidden, classes)
        self.condition_block = Block([self._kinds.visible_layer()])

    def program(self, weight: Any, visible_bias: Any, hidden_bias: Any, coupling: Any,  # type: ignore[override]
                label_weight: Any | None = None) -> Any:
        """weight (sites * 3, H), visible_bias (sites * 3,), hidden_bias (H,), coupling J (a
        scalar), label_weight (K, H) when the RBM has labels: :func:`dtm_step_params`'s
        order. Shapes are checked here, at trace time (a wrong one would otherwise surface
        as an obscure XLA broadcasting error)."""
        import jax.numpy as jnp
        from thrml import InteractionGroup

        rows = self.sites * (LEVELS - 1)
        expected = {"weight": (rows, self.hidden), "visible_bias": (rows,), "hidden_bias": (self.hidden,),
                    "coupling": ()}
        given = {"weight": weight, "visible_bias": visible_bias, "hidden_bias": hidden_bias, "coupling": coupling}
        if self.classes:
            expected["label_weight"], given["label_weight"] = (self.classes, self.hidden), label_weight
        elif label_weight is not None:
            raise ValueError("an RBM without labels takes no label_weight")
        for name, shape in expected.items():
            if given[name] is None or tuple(jnp.shape(given[name])) != shape:
                raise ValueError(f"{name} must have shape {shape}, got "
                                 f"{None if given[name] is None else tuple(jnp.shape(given[name]))}")
        groups, clamped = self._rbm_groups(weight, visible_bias, hidden_bias, label_weight)
        groups.append(InteractionGroup(self._kinds.condition_to_visible(jnp.reshape(coupling, (1,))),
                                       self.visible_block, [self.condition_block]))
        return self._sampling_program(groups, [self.condition_block, *clamped])

    def to_state(self, images: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """(C, height, width) levels of x_i -> the free blocks' start: [hidden (C, 1, H)
        random bits (never read: the first sweep draws h), visible x_{i-1} = x_i (C, 1, sites)],
        as ``DTM.denoise`` starts."""
        return super().to_state(self._checked_images(images), rng)

    def clamp(self, images: np.ndarray, labels: np.ndarray | None = None) -> list[np.ndarray]:  # type: ignore[override]
        """The clamped blocks' states: x_i (C, 1, sites) uint8 and, with labels, each
        chain's label (C, 1) uint8."""
        x = self._checked_images(images)
        chains = len(x)
        out = [x.reshape(chains, 1, self.sites)]
        if self.classes:
            y = np.asarray(labels) if labels is not None else None
            if y is None or y.shape != (chains,):
                raise ValueError(f"an RBM with labels needs {chains} labels, got "
                                 f"{None if y is None else y.shape}")
            if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= self.classes):
                raise ValueError(f"labels must be integers in [0, {self.classes})")
            out += clamped_labels(True, y, chains)
        elif labels is not None and len(labels):
            raise ValueError("an RBM without labels takes no labels")
        return out

    def _checked_images(self, images: np.ndarray) -> np.ndarray:
        """``images`` as (C, sites) uint8 levels in [0, LEVELS), or a ValueError (an
        out-of-range level would index past the one-hot silently)."""
        x = np.asarray(images)
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != self.sites:
            raise ValueError(f"expected (chains, ...) images of {self.sites} sites, got shape {x.shape}")
        if x.size and (not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() >= LEVELS):
            raise ValueError(f"levels must be integers in [0, {LEVELS})")
        return x.reshape(len(x), self.sites).astype(np.uint8)


def dtm_step_params(rbm: CategoricalRBM, coupling: float) -> tuple:
    """One DTM step's parameters as :meth:`DTMStepGraph.program` takes them (numpy float32;
    J a 0-d array, so that every step's J has one dtype and shape and no step recompiles):
    ``rbm``'s weights and biases, J, and the label weights when it has labels."""
    if not isinstance(rbm, CategoricalRBM):
        raise TypeError(f"expected a CategoricalRBM, got {type(rbm).__name__}")
    if rbm.config.levels != LEVELS:
        raise ValueError(f"a DTM step's RBM has {LEVELS} levels, got {rbm.config.levels}")
    if not np.isfinite(coupling):
        raise ValueError(f"the coupling must be finite, got {coupling}")
    params = tuple(getattr(rbm, name).detach().cpu().numpy().astype(np.float32)
                   for name in ("weight", "visible_bias", "hidden_bias"))
    params += (np.asarray(coupling, dtype=np.float32),)
    if rbm.conditional:
        params += (rbm.label_weight.detach().cpu().numpy().astype(np.float32),)
    return params


def dtm_step_graph(rbm: CategoricalRBM, coupling: float) -> tuple[DTMStepGraph, tuple]:
    """(graph, params) of one DTM step: the conditional law p(x_{i-1} | x_i, y) of ``rbm``
    times the coupling J [x_{i-1,s} = x_{i,s}]. The graph depends on the RBM's sizes only,
    so one graph (and one compiled :class:`ThrmlSampler`) serves every step of a DTM, with
    each step's :func:`dtm_step_params`."""
    params = dtm_step_params(rbm, coupling)
    return DTMStepGraph(rbm.sites, rbm.config.hidden, rbm.config.classes), params


class DBNTopGraph:
    """The top-level RBM of a DBN (:class:`rgbench.models.dbn.BernoulliRBM` over the binary
    penultimate layer v and a one-hot label y, binary hidden units h) as THRML layer nodes,
    so THRML runs the top-level block Gibbs of ``DBN.sample``; the up-pass that starts it
    and the directed top-down pass after it stay in torch.

    The penultimate layer is the categorical RBM's visible layer with 2 levels (same node
    class and samplers, see :func:`_rbm_classes`); the label is one ``CategoricalNode`` of
    ``classes`` states, read by the hidden layer through U. A sweep is the torch sampler's:
    h | v, y; then v | h and, with the label free, y | h. With ``clamp_labels`` the label is
    a clamped block (class-conditional samples); otherwise it is a free block in one
    superblock with the penultimate layer: both are drawn from the same h (they are
    conditionally independent given h), as ``BernoulliRBM.gibbs`` draws them."""

    def __init__(self, visible: int, hidden: int, classes: int, clamp_labels: bool) -> None:
        import jax
        import jax.numpy as jnp
        from thrml import Block, CategoricalNode
        from thrml.pgm import DEFAULT_NODE_SHAPE_DTYPES

        # a label is a uint8 CategoricalNode state, hence at most 256 classes
        if visible < 1 or hidden < 1 or not 1 <= classes <= 256:
            raise ValueError(f"invalid top RBM sizes: visible={visible}, hidden={hidden}, classes={classes}")
        self._kinds = _rbm_classes()
        self.visible, self.hidden, self.classes = visible, hidden, classes
        self.clamp_labels = bool(clamp_labels)
        self.hidden_block = Block([self._kinds.hidden_layer()])
        self.penultimate_block = Block([self._kinds.visible_layer()])
        self.label_block = Block([CategoricalNode()])
        self.shapes = dict(DEFAULT_NODE_SHAPE_DTYPES)
        self.shapes[self._kinds.visible_layer] = jax.ShapeDtypeStruct((visible,), jnp.uint8)
        self.shapes[self._kinds.hidden_layer] = jax.ShapeDtypeStruct((hidden,), jnp.uint8)

    def program(self, weight: Any, visible_bias: Any, hidden_bias: Any, label_weight: Any, label_bias: Any) -> Any:
        """weight W (visible, H), visible_bias b (visible,), hidden_bias c (H,), label_weight
        U (K, H), label_bias d (K,): ``BernoulliRBM``'s parameters (d is unused when the
        label is clamped: it is constant given y). jnp arrays or tracers; shapes are checked
        here, at trace time, because a wrong shape would otherwise surface as an obscure
        XLA broadcasting error."""
        from thrml import BlockGibbsSpec, BlockSamplingProgram, InteractionGroup

        expected = {"weight": (self.visible, self.hidden), "visible_bias": (self.visible,),
                    "hidden_bias": (self.hidden,), "label_weight": (self.classes, self.hidden),
                    "label_bias": (self.classes,)}
        given = dict(zip(expected, (weight, visible_bias, hidden_bias, label_weight, label_bias)))
        for name, shape in expected.items():
            if tuple(given[name].shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(given[name].shape)}")
        kinds = self._kinds
        groups = [InteractionGroup(kinds.visible_to_hidden(weight[None], hidden_bias[None]), self.hidden_block,
                                   [self.penultimate_block]),
                  InteractionGroup(kinds.label_to_hidden(label_weight[None]), self.hidden_block, [self.label_block]),
                  InteractionGroup(kinds.hidden_to_visible(weight.T[None], visible_bias[None]), self.penultimate_block,
                                   [self.hidden_block])]
        samplers = [kinds.hidden_sampler(2), kinds.visible_sampler(self.visible, 2)]
        if self.clamp_labels:
            spec = BlockGibbsSpec([self.hidden_block, self.penultimate_block], [self.label_block], self.shapes)
        else:
            groups.append(InteractionGroup(kinds.hidden_to_label(label_weight.T[None], label_bias[None]),
                                           self.label_block, [self.hidden_block]))
            samplers.append(kinds.label_sampler())
            spec = BlockGibbsSpec([self.hidden_block, (self.penultimate_block, self.label_block)], [], self.shapes)
        return BlockSamplingProgram(spec, samplers, groups)

    @property
    def blocks(self) -> list:
        """The free blocks in the state list's order: hidden, penultimate (and the free label)."""
        free = [self.hidden_block, self.penultimate_block]
        return free if self.clamp_labels else free + [self.label_block]

    def to_state(self, penultimate: np.ndarray, labels: np.ndarray | None, rng: np.random.Generator
                 ) -> list[np.ndarray]:
        """(C, visible) 0/1 starts -> [hidden (C, 1, H) random bits, penultimate (C, 1, visible)]
        and, with the label free, its start (C, 1), all uint8. The first sweep draws h from
        (v, y), so the hidden start is never read but the free label's start is; ``labels``
        None draws it uniformly from ``rng`` (``DBN.sample``'s start), and it is ignored
        when the label is clamped (:meth:`clamp` holds it)."""
        pen = np.asarray(penultimate)
        if pen.ndim != 2 or pen.shape[1] != self.visible:
            raise ValueError(f"expected (chains, {self.visible}) penultimate states, got shape {pen.shape}")
        if pen.size and not np.isin(pen, (0, 1)).all():
            raise ValueError("penultimate states must be 0 or 1")
        chains = len(pen)
        state = [rng.integers(0, 2, size=(chains, 1, self.hidden), dtype=np.uint8),
                 pen.astype(np.uint8).reshape(chains, 1, self.visible)]
        if not self.clamp_labels:
            start = rng.integers(0, self.classes, size=chains) if labels is None else self._checked(labels, chains)
            state.append(start.astype(np.uint8).reshape(chains, 1))
        return state

    def clamp(self, labels: np.ndarray | None, chains: int) -> list[np.ndarray]:
        """The clamped label block's state [(C, 1) uint8], or [] with the label free."""
        if not self.clamp_labels:
            return []
        if labels is None:
            raise ValueError("a label-clamped top RBM needs labels")
        return clamped_labels(True, self._checked(labels, chains), chains)

    def penultimate(self, state: list[Any]) -> np.ndarray:
        """(C, visible) float32 0/1 penultimate states of a ThrmlSampler state list, ready for
        the torch down pass."""
        return np.asarray(state[1]).reshape(-1, self.visible).astype(np.float32)

    def hidden_bits(self, state: list[Any]) -> np.ndarray:
        """(C, H) float32 top hidden bits of a state list: the h of the last sweep, from
        which ``DBN.sample``'s ``down_pass: probabilities`` takes the mean penultimate layer."""
        return np.asarray(state[0]).reshape(-1, self.hidden).astype(np.float32)

    def labels(self, state: list[Any], clamped: np.ndarray | None = None) -> np.ndarray:
        """(C,) int64 labels: the free label block's, or (clamped) the ``clamped`` labels,
        which the state list does not hold."""
        if self.clamp_labels:
            if clamped is None:
                raise ValueError("a label-clamped top RBM's state holds no labels: pass the clamped ones")
            return self._checked(clamped, len(np.asarray(state[0]))).astype(np.int64)
        if clamped is not None:
            raise ValueError("the label is free: its labels come from the state, pass no clamped labels")
        return np.asarray(state[2]).reshape(-1).astype(np.int64)

    def _checked(self, labels: np.ndarray, chains: int) -> np.ndarray:
        """``labels`` as a (chains,) int64 array in [0, classes), or a ValueError (a label out
        of range would index U out of bounds, which XLA clamps silently)."""
        y = np.asarray(labels)
        if y.shape != (chains,):
            raise ValueError(f"expected {chains} labels, got shape {y.shape}")
        if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= self.classes):
            raise ValueError(f"labels must be integers in [0, {self.classes})")
        return y.astype(np.int64)


def dbn_top_graph(dbn: DBN, clamp_labels: bool) -> tuple[DBNTopGraph, tuple]:
    """(graph, params as graph.program takes them, numpy float32) for a trained
    :class:`rgbench.models.dbn.DBN`: its top RBM, label clamped or free."""
    from rgbench.models.dbn import DBN  # here, not at the top: dbn may come to import this module

    if not isinstance(dbn, DBN):
        raise TypeError(f"expected a DBN, got {type(dbn).__name__}")
    top = dbn.top
    graph = DBNTopGraph(top.visible, top.hidden, top.classes, clamp_labels)
    params = tuple(getattr(top, name).detach().cpu().numpy().astype(np.float32)
                   for name in ("weight", "visible_bias", "hidden_bias", "label_weight", "label_bias"))
    return graph, params


def thrml_graph(model: nn.Module) -> tuple[Any, tuple, Callable[[list[Any]], np.ndarray]]:
    """(graph, the model's parameters as the graph's program takes them, state -> images)
    for a trained lattice Potts model or categorical RBM."""
    height, width = model.config.height, model.config.width
    if isinstance(model, PottsModel):
        classes = model.config.classes
        graph: Any = LatticeFactorGraph(height, width, classes)
        bias, w_h, w_v = model.sampler_parameters()
        params: tuple = (bias.numpy().reshape(classes, height * width, LEVELS), np.float32(w_h), np.float32(w_v))
        return graph, params, graph.to_images
    if not isinstance(model, CategoricalRBM):
        raise TypeError(f"no THRML graph for {type(model).__name__}")
    graph = RBMLayerGraph(height * width, model.config.hidden, model.config.classes)
    params = (model.weight.detach().numpy(), model.visible_bias.detach().numpy(), model.hidden_bias.detach().numpy())
    if model.conditional:
        params += (model.label_weight.detach().numpy(),)
    return graph, params, lambda state: graph.to_images(state, height, width)


# ----------------------------------------------------------------------------- running

@dataclass
class ThrmlRun:
    images: np.ndarray  # (C, H, W) final levels
    snapshots: dict[int, np.ndarray]  # sweep -> (C, H, W) levels
    compile_seconds: float  # first call (trace, build, XLA compile, one step)
    sweep_seconds: float  # wall seconds per sweep of all chains (median over calls)
    sweep_cpu_seconds: float  # process CPU seconds per sweep of all chains
    final_state: list[np.ndarray]  # the free blocks' states after the last sweep
    # every call's wall and process CPU seconds per sweep, the first (compiling) call included:
    # a caller that runs one compiled sampler several times (a DTM's steps) pools them
    call_seconds: list[float] = field(default_factory=list)
    call_cpu_seconds: list[float] = field(default_factory=list)


class ThrmlSampler:
    """Runs one THRML program family (built by ``build(params)``) on many chains: one jitted,
    vmapped function per (chains, sweeps per call), reused across parameter sets."""

    def __init__(self, build: Callable[..., Any], blocks: list, sweeps_per_call: int = 1) -> None:
        import jax
        from thrml import SamplingSchedule, sample_states

        from rgbench.phases import watch_compilers

        watch_compilers()  # jax is imported by now: its compile time joins the job's `compile` phase
        self.build = build
        self.blocks = blocks
        schedule = SamplingSchedule(n_warmup=sweeps_per_call, n_samples=1, steps_per_sample=1)
        self.sweeps_per_call = sweeps_per_call

        def one_chain(key, state, clamp, params):
            program = build(*params)
            out = sample_states(key, program, schedule, list(state), list(clamp), blocks)
            return [o[0] for o in out]  # n_samples = 1: the state after the warm-up sweeps

        self._fn = jax.jit(jax.vmap(one_chain, in_axes=(0, 0, 0, None)))

    def run(self, params: tuple, state: list[np.ndarray], clamp: list[np.ndarray], sweeps: int, seed: int,
            to_images: Callable[[list[Any]], np.ndarray], checkpoints: tuple[int, ...] = ()) -> ThrmlRun:
        import jax

        if sweeps % self.sweeps_per_call:
            raise ValueError(f"sweeps ({sweeps}) must be a multiple of {self.sweeps_per_call}")
        chains = state[0].shape[0]
        base = jax.random.key(seed)
        params = tuple(jax.numpy.asarray(p) for p in params)
        current = [jax.numpy.asarray(s) for s in state]
        clamp = [jax.numpy.asarray(c) for c in clamp]
        snapshots: dict[int, np.ndarray] = {}
        walls, cpus, call_walls, call_cpus = [], [], [], []
        compile_seconds = 0.0
        done = 0
        for call in range(sweeps // self.sweeps_per_call):
            keys = jax.random.split(jax.random.fold_in(base, call), chains)
            wall, cpu = time.perf_counter(), time.process_time()
            current = jax.block_until_ready(self._fn(keys, current, clamp, params))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            call_walls.append(wall / self.sweeps_per_call)
            call_cpus.append(cpu / self.sweeps_per_call)
            if call == 0:
                compile_seconds = wall
            else:
                walls.append(wall / self.sweeps_per_call)
                cpus.append(cpu / self.sweeps_per_call)
            done += self.sweeps_per_call
            if done in checkpoints:
                snapshots[done] = to_images(current)
        median = lambda v: float(np.median(v)) if v else float("nan")  # noqa: E731
        return ThrmlRun(to_images(current), snapshots, compile_seconds, median(walls), median(cpus),
                        [np.asarray(s) for s in current], call_walls, call_cpus)
