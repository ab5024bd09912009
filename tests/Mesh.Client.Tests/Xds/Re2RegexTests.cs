using Mesh.Xds.Matching;

namespace Mesh.Client.Tests.Xds;

/// <summary>RE2 patterns keep RE2's meaning on .NET's engine, and what RE2 refuses is refused.</summary>
public class Re2RegexTests
{
    [Theory]
    // \d, \w, \s are ASCII in RE2: another script's digits are another spelling, not a match.
    [InlineData(@"/beta/\d+", "/beta/42", true)]
    [InlineData(@"/beta/\d+", "/beta/٤٢", false)]
    [InlineData(@"/beta/[\d]+", "/beta/٤٢", false)]
    [InlineData(@"\w+", "héllo", false)]
    [InlineData(@"\w+", "hello_1", true)]
    [InlineData(@"a\sb", "a\u00a0b", false)]
    [InlineData(@"\D+", "٤", true)]
    // $ is the end of the text in RE2, not "before a final newline".
    [InlineData(@"/admin$", "/admin\n", false)]
    [InlineData(@"(?m)a$", "a", true)]
    // POSIX classes are RE2 syntax; .NET would read [[:alpha:]] as a bracket soup.
    [InlineData(@"[[:alpha:]]+", "abcXYZ", true)]
    [InlineData(@"[[:alpha:]]+", ":", false)]
    [InlineData(@"[[:digit:][:upper:]]+", "A1B2", true)]
    // "-[" is a literal in RE2, a class subtraction in .NET.
    [InlineData(@"[a-z-[aeiou]]+", "a", false)]
    [InlineData(@"[a-z-[aeiou]]", "a]", true)]
    // Named groups in RE2's spelling, literal text, \x{..}, one-letter Unicode classes.
    [InlineData(@"(?P<id>[0-9]+)", "123", true)]
    [InlineData(@"\Q/a.b\E", "/a.b", true)]
    [InlineData(@"\Q/a.b\E", "/axb", false)]
    [InlineData(@"\x{41}", "A", true)]
    [InlineData(@"\pL+", "héllo", true)]
    // Flags and non-capturing groups.
    [InlineData(@"(?i)abc", "ABC", true)]
    [InlineData(@"(?:ab)+", "abab", true)]
    [InlineData(@"(?i:a)b", "Ab", true)]
    // A full match: the whole input.
    [InlineData(@"/beta/[0-9]+", "/beta/42/x", false)]
    [InlineData(@"a|b", "ab", false)]
    [InlineData(@"a{2,1000}", "aaa", true)]
    public void FullMatch_HasRe2Meaning(string pattern, string input, bool expected)
    {
        var regex = Re2Regex.TryCompileFullMatch(pattern, ignoreCase: false, out var error);

        Assert.True(regex is not null, error);
        Assert.Equal(expected, regex.IsMatch(input));
    }

    [Theory]
    [InlineData(@"(?=a)a", "lookahead")]
    [InlineData(@"(?<!a)b", "lookbehind")]
    [InlineData(@"(?>a+)", "atomic group")]
    [InlineData(@"(a)\1", "backreference")]
    [InlineData(@"(?P<x>a)(?P=x)", "backreference")]
    [InlineData(@"(?(1)a|b)", "conditional")]
    [InlineData(@"(?#comment)a", "comment")]
    [InlineData(@"a++", "possessive")]
    [InlineData(@"(?U)a+", "ungreedy")]
    [InlineData(@"\k<x>", @"\k")]
    [InlineData(@"\Gabc", @"\G")]
    [InlineData(@"abc\Z", @"\Z")]
    [InlineData(@"\u0041", @"\u")]
    [InlineData(@"[[:word:][:^alpha:]]", "POSIX class")]
    [InlineData(@"[\D]", "inside a character class")]
    [InlineData(@"[abc", "not closed")]
    [InlineData(@"a)|(b", "not a valid RE2 regex")]
    [InlineData("", "1 to 1024")]
    [InlineData("a{1001}", "above RE2's limit of 1000")]
    [InlineData("a{2,5000}", "above RE2's limit of 1000")]
    [InlineData("a{99999999999}", "above RE2's limit of 1000")]
    public void NotRe2_IsRefusedWithTheReason(string pattern, string reason)
    {
        Assert.Null(Re2Regex.TryCompileFullMatch(pattern, ignoreCase: false, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    [Fact]
    public void TooLong_IsRefused()
    {
        Assert.Null(Re2Regex.TryCompileFullMatch(new string('a', Re2Regex.MaxPatternLength + 1), ignoreCase: false, out var error));
        Assert.Contains("1024", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(@"/beta/[0-9]+", "/beta/")]
    [InlineData(@"/beta/\d+", "/beta/")]
    [InlineData(@"/users/\w+", "/users/")]
    [InlineData(@"/a\.b.*", "/a.b")]
    [InlineData(@"/api/v1?", "/api/v")]
    [InlineData(@"/x{2}", "/")]
    [InlineData(@"ab+c", "a")]
    [InlineData(@"ab*", "a")]
    [InlineData(@"\\x", @"\x")]
    // Nothing can be promised: alternation, flags, anchors, classes and escapes that are not literals.
    [InlineData(@"/a|/b", "")]
    [InlineData(@"/(a|b)/c", "")]
    [InlineData(@"(?i)/admin", "")]
    [InlineData(@"^/x", "")]
    [InlineData(@"\Q/a.b\E", "")]
    [InlineData(@"\x{41}b", "")]
    [InlineData(@".*", "")]
    [InlineData(@"[/]x", "")]
    public void LiteralPrefix_IsWhatEveryMatchBeginsWith(string pattern, string prefix)
    {
        Assert.Equal(prefix, Re2Regex.LiteralPrefix(pattern));
    }

    /// <summary>
    /// The prefix may only refuse what the regex refuses: every string of up to 4 characters over the patterns' alphabet,
    /// against 400 random patterns of literals, escapes, classes, groups, alternation, anchors and quantifiers.
    /// </summary>
    [Fact]
    public void LiteralPrefix_NeverRefusesAMatch()
    {
        string[] tokens = ["a", "b", "/", @"\.", @"\/", ".", "*", "+", "?", "[ab]", "(a|b)", "(ab)", "(?:a)", "{1,2}", "|", "^", "$", @"\d", "(?i)", "1"];
        char[] alphabet = ['a', 'b', 'A', '/', '.', '1'];
        var inputs = new List<string> { string.Empty };
        for (var length = 1; length <= 4; length++)
        {
            inputs.AddRange(inputs.Where(input => input.Length == length - 1).SelectMany(input => alphabet.Select(c => input + c)).ToList());
        }

        var random = new Random(20261204);
        var (compiled, matched, matchedWithPrefix) = (0, 0, 0);
        for (var i = 0; i < 400; i++)
        {
            var pattern = string.Concat(Enumerable.Range(0, random.Next(1, 6)).Select(_ => tokens[random.Next(tokens.Length)]));
            if (Re2Regex.TryCompileFullMatch(pattern, ignoreCase: false, out _) is not { } regex)
            {
                continue;
            }

            compiled++;
            var prefix = Re2Regex.LiteralPrefix(pattern);
            foreach (var input in inputs.Where(input => regex.IsMatch(input)))
            {
                Assert.True(input.StartsWith(prefix, StringComparison.Ordinal), $"'{pattern}' matches '{input}', which does not begin with its prefix '{prefix}'");
                matched++;
                matchedWithPrefix += prefix.Length > 0 ? 1 : 0;
            }
        }

        // The check is only worth something if many patterns compiled, matched, and had a prefix to check.
        Assert.True(compiled > 150 && matched > 500 && matchedWithPrefix > 100, $"compiled {compiled}, matched {matched}, with a prefix {matchedWithPrefix}");
    }
}
