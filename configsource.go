package qcluster

import (
	"github.com/qcluster/qcluster/internal/config"
)

// Config layers. A peer run as a process (qcluster agent) takes its config
// from three places, each overriding the one before: the JSON config file,
// environment variables QCLUSTER_<FIELD>, and command-line flags
// --<field>. Every field of the file can be set each way; the names come
// from the one table of fields the file decoder uses, so they cannot drift:
//
//	"advertise_host" in the file, QCLUSTER_ADVERTISE_HOST, --advertise-host
//
// See config.LoadLayers for how values are written as text.

// ConfigEnvPrefix starts the name of every environment variable that sets a
// config field: QCLUSTER_ and the field's JSON name in upper case.
const ConfigEnvPrefix = config.EnvPrefix

// ConfigField describes one field of the config file and the names that
// set it from outside the file.
type ConfigField = config.Field

// ConfigOverride is one config field set outside the config file.
type ConfigOverride = config.Override

// ConfigFields returns every field of the config file, in the order of the
// file format.
func ConfigFields() []ConfigField { return config.Fields() }

// ConfigEnvOverrides returns the overrides that the environment environ
// (os.Environ's form, "KEY=value") sets: one for every QCLUSTER_<FIELD>
// variable, in the order of ConfigFields. A variable whose name looks like
// a misspelt field (QCLUSTER_IDENTIFER) is an error that names the right
// one; other QCLUSTER_ variables (QCLUSTER_ADDR and QCLUSTER_TOKEN of the
// client commands, ...) are not config fields and are left alone.
func ConfigEnvOverrides(environ []string) ([]ConfigOverride, error) {
	return config.EnvOverrides(environ)
}

// LoadConfigLayers reads the JSON config file at path (none when path is
// "") and applies overrides to it in order, a later one winning over an
// earlier one for the same field (give the environment's first, then the
// flags'), then fills the defaults and validates, like LoadConfig. Every
// problem names its source: the file's line and column, or the override's
// Source.
func LoadConfigLayers(path string, overrides ...ConfigOverride) (Config, error) {
	return config.LoadLayers(path, overrides...)
}

// Suggest returns the name among names that word looks like a misspelling
// of, or "": the rule the config decoder uses for unknown keys (see Config:
// equal once case and '_', '-', '.' are ignored, or a small
// Damerau-Levenshtein distance away). The qcluster command uses it for
// mistyped commands and flags ("stauts": "status").
func Suggest(word string, names []string) string { return config.Suggest(word, names) }
