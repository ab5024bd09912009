using Mesh.ControlPlane.Model;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace Mesh.ControlPlane.Sources;

/// <summary>Bounds on a file's shape, checked on the parser's events before the representation model is built.</summary>
internal static partial class YamlConfigLoader
{
    /// <summary>
    /// The deepest nesting of mappings and sequences a file may have. Istio resources need about 20 levels; YamlDotNet's
    /// representation model recurses per level, and a file of 50,000 <c>[</c> overflows the stack, which no catch survives.
    /// </summary>
    internal const int MaxNestingDepth = 100;

    /// <summary>
    /// The most nodes a file's aliases may stand for once expanded. Anchors nested in anchors expand exponentially (the
    /// "billion laughs"), and YamlDotNet hashes an alias used as a key through its whole expansion: a 1 KB file could hold
    /// the publisher's loop for hours. A few shared label sets stay far below this.
    /// </summary>
    internal const int MaxAliasExpansion = 100_000;

    /// <summary>
    /// Reads the parser's events once (a loop, no recursion) and refuses a file nested deeper than
    /// <see cref="MaxNestingDepth"/> or whose aliases expand beyond <see cref="MaxAliasExpansion"/> nodes, as go-yaml refuses
    /// "excessive aliasing" and "exceeded max depth"; null when the file is within both. Throws <see cref="YamlException"/>
    /// on invalid YAML, as <see cref="YamlDotNet.RepresentationModel.YamlStream.Load(TextReader)"/> would.
    /// </summary>
    private static ConfigError? CheckShape(string file, string text)
    {
        var parser = new Parser(new StringReader(text));
        var open = new List<(AnchorName Anchor, long Nodes)>(); // the collections being read, innermost last, with their expanded node counts
        var expandedSizes = new Dictionary<AnchorName, long>(); // each anchor's node count with its own aliases expanded
        long aliasNodes = 0;
        while (parser.MoveNext())
        {
            switch (parser.Current)
            {
                case MappingStart or SequenceStart:
                    var start = (NodeEvent)parser.Current;
                    if (open.Count == MaxNestingDepth)
                    {
                        return new ConfigError(file, (int)start.Start.Line,
                            $"nesting deeper than {MaxNestingDepth} levels; Istio resources need about 20, so the file is likely generated wrongly or damaged");
                    }

                    open.Add((start.Anchor, 1));
                    break;
                case MappingEnd or SequenceEnd:
                    var (anchor, nodes) = open[^1];
                    open.RemoveAt(open.Count - 1);
                    if (!anchor.IsEmpty)
                    {
                        expandedSizes[anchor] = nodes;
                    }

                    Count(open, nodes);
                    break;
                case Scalar scalar:
                    if (!scalar.Anchor.IsEmpty)
                    {
                        expandedSizes[scalar.Anchor] = 1;
                    }

                    Count(open, 1);
                    break;
                case AnchorAlias alias:
                    // An alias inside its own anchor's collection makes a cycle, which YamlDotNet builds and then hashes
                    // forever when it is a key (a 26-byte file overflowed the stack; found in review, 2026-12-05). go-yaml
                    // refuses it too ("anchor value contains itself").
                    if (open.Exists(o => !o.Anchor.IsEmpty && o.Anchor.Equals(alias.Value)))
                    {
                        return new ConfigError(file, (int)alias.Start.Line, $"alias *{alias.Value} refers to its own anchor (a cycle)");
                    }

                    // An alias to an unknown anchor is left to the loader, which names it.
                    var size = expandedSizes.GetValueOrDefault(alias.Value, 1);
                    aliasNodes += size;
                    if (aliasNodes > MaxAliasExpansion)
                    {
                        return new ConfigError(file, (int)alias.Start.Line,
                            $"excessive aliasing: the aliases expand to more than {MaxAliasExpansion} nodes; write the repeated values out or share fewer, smaller anchors");
                    }

                    Count(open, size);
                    break;
            }
        }

        return null;

        static void Count(List<(AnchorName Anchor, long Nodes)> open, long nodes)
        {
            if (open.Count > 0)
            {
                open[^1] = (open[^1].Anchor, open[^1].Nodes + nodes);
            }
        }
    }
}
