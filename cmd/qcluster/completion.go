package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/qcluster/qcluster"
)

const completionUsage = `Usage: qcluster completion bash|zsh|fish

Prints a script that completes qcluster's commands and their flags in the
given shell (and file names elsewhere).

Examples:

	source <(qcluster completion bash)                  # in ~/.bashrc
	source <(qcluster completion zsh)                   # in ~/.zshrc
	qcluster completion fish > ~/.config/fish/completions/qcluster.fish

Flags:
`

// shells are the shells qcluster completion writes scripts for.
var shells = []string{"bash", "zsh", "fish"}

// CompletionCommand is "qcluster completion": it prints a shell completion
// script.
type CompletionCommand struct {
	// Stdout receives the script, and help when asked for.
	Stdout io.Writer
}

// Run prints the completion script for the shell named in args.
func (c *CompletionCommand) Run(ctx context.Context, args []string) error {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fs := flag.NewFlagSet("completion", flag.ContinueOnError)
		if err := parseFlags(fs, args, c.Stdout, completionUsage); err != nil {
			if errors.Is(err, errHelp) {
				return nil
			}
			return err
		}
		return usageErrorf("completion", "completion: name one shell: bash, zsh or fish")
	}
	shell := args[0]
	if !slices.Contains(shells, shell) {
		if s := qcluster.Suggest(shell, shells); s != "" {
			return usageErrorf("completion", "completion: unknown shell %q; did you mean %q?", shell, s)
		}
		return usageErrorf("completion", "completion: unknown shell %q; give bash, zsh or fish", shell)
	}
	flags := commandFlags(ctx)
	var b strings.Builder
	switch shell {
	case "bash":
		writeBash(&b, flags)
	case "zsh":
		writeZsh(&b, flags)
	case "fish":
		writeFish(&b, flags)
	}
	_, err := io.WriteString(c.Stdout, b.String())
	return err
}

// flagLine is a flag in the help PrintDefaults writes.
var flagLine = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9-]*)`)

// commandFlags returns the flags of every command, read from its own help
// (so the scripts cannot miss a flag a command defines).
func commandFlags(ctx context.Context) map[string][]string {
	out := map[string][]string{}
	for _, cmd := range commands {
		if cmd == "help" {
			continue
		}
		var help bytes.Buffer
		_ = (&Main{Stdout: &help, Stderr: io.Discard}).Run(ctx, []string{cmd, "-h"})
		sc := bufio.NewScanner(&help)
		for sc.Scan() {
			if m := flagLine.FindStringSubmatch(sc.Text()); m != nil {
				dash := "--"
				if len(m[1]) == 1 {
					dash = "-" // -o, -v
				}
				out[cmd] = append(out[cmd], dash+m[1])
			}
		}
	}
	out["completion"] = append(out["completion"], shells...)
	return out
}

func writeBash(b *strings.Builder, flags map[string][]string) {
	b.WriteString("# bash completion for qcluster: source <(qcluster completion bash)\n")
	b.WriteString("_qcluster() {\n")
	b.WriteString("    local cur=${COMP_WORDS[COMP_CWORD]}\n")
	b.WriteString("    COMPREPLY=()\n")
	b.WriteString("    if [ \"$COMP_CWORD\" -eq 1 ]; then\n")
	fmt.Fprintf(b, "        COMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(commands, " "))
	b.WriteString("        return\n    fi\n")
	b.WriteString("    local words=\n")
	b.WriteString("    case \"${COMP_WORDS[1]}\" in\n")
	for _, cmd := range commands {
		if fl := flags[cmd]; len(fl) > 0 {
			fmt.Fprintf(b, "        %s) words=%q ;;\n", cmd, strings.Join(fl, " "))
		}
	}
	b.WriteString("        help) words=" + fmt.Sprintf("%q", strings.Join(commands, " ")) + " ;;\n")
	b.WriteString("    esac\n")
	b.WriteString("    if [[ \"$cur\" == -* || \"${COMP_WORDS[1]}\" == completion || \"${COMP_WORDS[1]}\" == help ]]; then\n")
	b.WriteString("        COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n")
	b.WriteString("    else\n")
	b.WriteString("        COMPREPLY=($(compgen -f -- \"$cur\"))\n")
	b.WriteString("    fi\n")
	b.WriteString("}\n")
	b.WriteString("complete -o filenames -F _qcluster qcluster\n")
}

func writeZsh(b *strings.Builder, flags map[string][]string) {
	b.WriteString("#compdef qcluster\n# zsh completion for qcluster: source <(qcluster completion zsh)\n")
	b.WriteString("_qcluster() {\n")
	b.WriteString("    if (( CURRENT == 2 )); then\n")
	fmt.Fprintf(b, "        compadd -- %s\n", strings.Join(commands, " "))
	b.WriteString("        return\n    fi\n")
	b.WriteString("    local -a cands\n")
	b.WriteString("    case ${words[2]} in\n")
	for _, cmd := range commands {
		if fl := flags[cmd]; len(fl) > 0 {
			fmt.Fprintf(b, "        %s) cands=(%s) ;;\n", cmd, strings.Join(fl, " "))
		}
	}
	fmt.Fprintf(b, "        help) cands=(%s) ;;\n", strings.Join(commands, " "))
	b.WriteString("    esac\n")
	b.WriteString("    if [[ $PREFIX == -* || ${words[2]} == completion || ${words[2]} == help ]]; then\n")
	b.WriteString("        compadd -- $cands\n")
	b.WriteString("    else\n")
	b.WriteString("        _files\n")
	b.WriteString("    fi\n")
	b.WriteString("}\n")
	b.WriteString("if [ \"$funcstack[1]\" = \"_qcluster\" ]; then\n    _qcluster \"$@\"\nelse\n    compdef _qcluster qcluster\nfi\n")
}

func writeFish(b *strings.Builder, flags map[string][]string) {
	b.WriteString("# fish completion for qcluster: qcluster completion fish > ~/.config/fish/completions/qcluster.fish\n")
	fmt.Fprintf(b, "complete -c qcluster -n __fish_use_subcommand -f -a %q\n", strings.Join(commands, " "))
	for _, cmd := range commands {
		for _, f := range flags[cmd] {
			if name, ok := strings.CutPrefix(f, "--"); ok {
				fmt.Fprintf(b, "complete -c qcluster -n '__fish_seen_subcommand_from %s' -l %s\n", cmd, name)
			} else if name, ok := strings.CutPrefix(f, "-"); ok {
				fmt.Fprintf(b, "complete -c qcluster -n '__fish_seen_subcommand_from %s' -o %s\n", cmd, name)
			} else {
				fmt.Fprintf(b, "complete -c qcluster -n '__fish_seen_subcommand_from %s' -f -a %s\n", cmd, f)
			}
		}
	}
	fmt.Fprintf(b, "complete -c qcluster -n '__fish_seen_subcommand_from help' -f -a %q\n", strings.Join(commands, " "))
}
