using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace Mesh.KubernetesFake;

public sealed partial class FakeKubernetesApiServer
{
    /// <summary>Legacy discovery (/api, /api/v1, /apis, /apis/{g}, /apis/{g}/{v}), /version and the health endpoints.</summary>
    private async Task ServeDiscoveryAsync(HttpContext context, string[] s)
    {
        if (context.Request.Method != "GET")
        {
            throw new FakeKubernetesStatusException(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
        }
        JsonObject? body = s switch
        {
            ["version"] => new JsonObject
            {
                ["major"] = "1",
                ["minor"] = "32",
                ["gitVersion"] = "v1.32.0-mesh-fake",
                ["gitCommit"] = "0000000000000000000000000000000000000000",
                ["gitTreeState"] = "clean",
                ["buildDate"] = "2026-01-01T00:00:00Z",
                ["goVersion"] = "go1.23.0",
                ["compiler"] = "gc",
                ["platform"] = "linux/amd64",
            },
            ["api"] => new JsonObject
            {
                ["kind"] = "APIVersions",
                ["versions"] = new JsonArray("v1"),
                ["serverAddressByClientCIDRs"] = new JsonArray(new JsonObject { ["clientCIDR"] = "0.0.0.0/0", ["serverAddress"] = $"127.0.0.1:{Port}" }),
            },
            ["api", "v1"] => ResourceList("", "v1"),
            ["apis"] => new JsonObject
            {
                ["kind"] = "APIGroupList",
                ["apiVersion"] = "v1",
                ["groups"] = new JsonArray([.. FakeResourceCatalog.Groups.Select(g => (JsonNode)Group(g))]),
            },
            ["apis", var g] when FakeResourceCatalog.Groups.Contains(g) => Group(g),
            ["apis", var g, var v] when FakeResourceCatalog.All.Any(t => t.Group == g && t.Versions.Contains(v)) => ResourceList(g, v),
            _ => null,
        };
        if (s is ["healthz" or "livez" or "readyz"])
        {
            context.Response.ContentType = "text/plain";
            await context.Response.WriteAsync("ok", context.RequestAborted).ConfigureAwait(false);
            return;
        }
        if (body is null)
        {
            throw new FakeKubernetesStatusException(404, "NotFound", "the server could not find the requested resource");
        }
        await WriteJsonAsync(context, 200, body).ConfigureAwait(false);
    }

    private static JsonObject Group(string group)
    {
        var versions = FakeResourceCatalog.All.Where(t => t.Group == group).SelectMany(t => t.Versions).Distinct().ToList();
        JsonObject Version(string v) => new() { ["groupVersion"] = group + "/" + v, ["version"] = v };
        return new JsonObject
        {
            ["kind"] = "APIGroup",
            ["apiVersion"] = "v1",
            ["name"] = group,
            ["versions"] = new JsonArray([.. versions.Select(v => (JsonNode)Version(v))]),
            ["preferredVersion"] = Version(versions[0]),
        };
    }

    private static JsonObject ResourceList(string group, string version)
    {
        var resources = new JsonArray();
        foreach (var t in FakeResourceCatalog.All.Where(t => t.Group == group && t.Versions.Contains(version)))
        {
            resources.Add(new JsonObject
            {
                ["name"] = t.Plural,
                ["singularName"] = t.Singular,
                ["namespaced"] = t.Namespaced,
                ["kind"] = t.Kind,
                ["verbs"] = new JsonArray([.. t.Verbs.Select(v => (JsonNode)v)]),
                ["shortNames"] = new JsonArray([.. t.ShortNames.Select(v => (JsonNode)v)]),
            });
            if (t.Verbs.Contains("update"))
            {
                resources.Add(new JsonObject
                {
                    ["name"] = t.Plural + "/status",
                    ["singularName"] = "",
                    ["namespaced"] = t.Namespaced,
                    ["kind"] = t.Kind,
                    ["verbs"] = new JsonArray("get", "patch", "update"),
                });
            }
        }
        return new JsonObject
        {
            ["kind"] = "APIResourceList",
            ["apiVersion"] = "v1",
            ["groupVersion"] = group.Length == 0 ? version : group + "/" + version,
            ["resources"] = resources,
        };
    }
}
