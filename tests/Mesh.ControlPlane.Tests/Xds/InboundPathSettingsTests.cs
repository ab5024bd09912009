using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using static Mesh.ControlPlane.Tests.TestModels;
using HttpRbac = Mesh.Xds.Envoy.Extensions.Filters.Http.Rbac.V3.RBAC;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>The ControlPlane path keys reach the inbound listeners the publisher serves.</summary>
public sealed class InboundPathSettingsTests
{
    [Fact]
    public void Publisher_PathKeysFromConfiguration_ShapeEveryInboundListener()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ControlPlane:PathNormalization"] = "NONE",
            ["ControlPlane:PathEscapedSlashes"] = "KEEP_UNCHANGED",
            ["ControlPlane:PathIgnoreCase"] = "false",
        }).Build();
        var options = ControlPlaneOptions.Load(configuration);
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        var deny = new AuthorizationPolicyModel("default", "deny-admin", null, AuthorizationAction.Deny,
            [new AuthorizationRule([], [new RuleOperation([], [], ["/admin"], [], [], [], [], [])], [])], "a.yaml", 1);
        var config = new YamlConfig([Service(selector: new Dictionary<string, string> { ["app"] = "orders" })], [Workload("10.0.0.5", new Dictionary<string, uint> { ["http"] = 8080 })], [])
        {
            AuthorizationPolicies = [deny],
        };
        Assert.True(store.ApplyYaml(new YamlLoadResult(config, [])));

        using var publisher = new XdsPublisher(store, options, TimeProvider.System, NullLogger<XdsPublisher>.Instance);

        var listener = publisher.Current.InboundListeners["xds.istio.io/grpc/lds/inbound/10.0.0.5:8080"].Resource.Unpack<Listener>();
        var manager = listener.FilterChains[0].Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        Assert.False(manager.NormalizePath);
        Assert.False(manager.MergeSlashes);
        Assert.Equal(HttpConnectionManager.Types.PathWithEscapedSlashesAction.KeepUnchanged, manager.PathWithEscapedSlashesAction);
        var paths = manager.HttpFilters[0].TypedConfig.Unpack<HttpRbac>().Rules.Policies.Single().Value.Permissions.Single().OrRules.Rules;
        Assert.Equal(["/admin", "/admin/"], paths.Select(p => p.UrlPath.Path.Exact));
        Assert.All(paths, p => Assert.False(p.UrlPath.Path.IgnoreCase));
    }
}
