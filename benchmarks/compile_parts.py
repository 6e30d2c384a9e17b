"""XLA compile time of the pieces of one training step (value_and_grad, Adam, the whole step),
for one model on perfect recall (l = 15, k = 5, batch 5), with no persistent cache involved
(`lower().compile()` always compiles).

    PYTHONPATH=src python benchmarks/compile_parts.py vrnn
"""
import time, sys
import jax, jax.numpy as jnp, equinox as eqx, optax
from gtmm.train import TrainConfig, make_optimizer, make_train_step, build_model
from gtmm.model import loss_fn
from gtmm.tasks import make_task
cfg=TrainConfig(model=sys.argv[1], task='perfect-recall', steps=2, batch_size=5)
task=make_task('perfect-recall', l=15, k=5)
model=build_model(cfg, cfg.model_config(task))
opt=make_optimizer(cfg); os_=opt.init(eqx.filter(model, eqx.is_array))
b=task.batch('train',5,0,0); f,c=jnp.asarray(b.frames), jnp.asarray(b.context)
k=jax.random.PRNGKey(0)
def vg(m,f,c,k): return eqx.filter_value_and_grad(loss_fn, has_aux=True)(m,f,c,k)
def adam_only(m, o, g):
    u,o=opt.update(g,o,eqx.filter(m,eqx.is_array)); return eqx.apply_updates(m,u),o
g=eqx.filter(model, eqx.is_array)
for name, fn, args in [('value_and_grad', eqx.filter_jit(vg), (model,f,c,k)),
                       ('adam only', eqx.filter_jit(adam_only), (model, os_, g)),
                       ('train step', make_train_step(opt), (model, os_, f, c, k))]:
    l=fn.lower(*args); t=time.time(); l.compile(); print(sys.argv[1], name, round(time.time()-t,1), flush=True)
