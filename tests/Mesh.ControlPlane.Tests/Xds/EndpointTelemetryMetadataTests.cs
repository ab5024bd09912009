using System.Collections.Immutable;
using k8s.Models;
using Mesh.ControlPlane.Kubernetes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Wire;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>
/// istiod's endpoint telemetry metadata (<c>filter_metadata.istio.workload</c>) on every EDS endpoint: what a caller reports
/// as <c>destination_workload</c>, canonical service and revision, so that Kiali draws its edges into the workload.
/// </summary>
public sealed class EndpointTelemetryMetadataTests
{
    [Theory]
    [InlineData("", "app=orders,version=v2", null, "orders;shop;orders;v2;")] // a registration: no name, its app is its service
    [InlineData("orders-0", "app=orders", null, "orders-0;shop;orders;latest;")] // a static WorkloadEntry: its name
    [InlineData("orders-7d9f-x2", "app=orders,app.kubernetes.io/version=1.4", "orders", "orders;shop;orders;1.4;")] // a Pod: its Deployment
    [InlineData("", "app=orders,service.istio.io/workload-name=orders-blue,service.istio.io/canonical-name=shop-orders,service.istio.io/canonical-revision=blue", null, "orders-blue;shop;shop-orders;blue;")]
    [InlineData("", "version=v1", null, "unknown;shop;unknown;v1;")]
    public void BuildLocalityEndpoints_EachEndpoint_CarriesIstiosWorkloadMetadata(string name, string labels, string? workloadName, string expected)
    {
        var workload = Workload(name, labels) with { WorkloadName = workloadName };

        var locality = XdsTranslator.BuildLocalityEndpoints(new Mesh.Xds.Envoy.Config.Core.V3.Locality(), [new ResolvedEndpoint(80, "10.0.0.1", 8080, workload)]);

        var metadata = Assert.Single(locality.LbEndpoints).Metadata.FilterMetadata[EndpointWorkloadMetadata.FilterName];
        Assert.Equal(expected, metadata.Fields[EndpointWorkloadMetadata.WorkloadField].StringValue);
    }

    [Fact]
    public void TelemetryMetadata_PartWithASemicolon_LeftEmpty_SoTheOthersKeepTheirPlaces()
    {
        var metadata = XdsTranslator.TelemetryMetadata(Workload("", "app=a;b,version=v1"));

        Assert.Equal(";shop;;v1;", metadata.FilterMetadata[EndpointWorkloadMetadata.FilterName].Fields[EndpointWorkloadMetadata.WorkloadField].StringValue);
    }

    [Theory]
    [InlineData("ReplicaSet", "orders-7d9f6c", "7d9f6c", "orders")]
    [InlineData("ReplicaSet", "orders-7d9f6c", "other", "orders-7d9f6c")]
    [InlineData("StatefulSet", "db", null, "db")]
    [InlineData(null, null, null, "orders-pod")]
    public void WorkloadNameOf_ThePodsController_ADeploymentForAReplicaSet(string? kind, string? owner, string? hash, string expected)
    {
        var pod = new V1Pod
        {
            Metadata = new V1ObjectMeta
            {
                Name = "orders-pod",
                Labels = hash is null ? new Dictionary<string, string>() : new Dictionary<string, string> { ["pod-template-hash"] = hash },
                OwnerReferences = kind is null ? null : [new V1OwnerReference { Kind = kind, Name = owner, Controller = true, ApiVersion = "apps/v1", Uid = "1" }],
            },
        };

        Assert.Equal(expected, KubernetesServiceTranslator.WorkloadNameOf(pod));
    }

    private static WorkloadInstance Workload(string name, string labels) => new(
        "shop",
        name,
        "10.0.0.1",
        ImmutableSortedDictionary.Create<string, uint>(StringComparer.Ordinal).Add("http", 8080),
        labels.Split(',').Select(l => l.Split('=')).ToImmutableSortedDictionary(l => l[0], l => l[1], StringComparer.Ordinal),
        "orders",
        string.Empty,
        0,
        EndpointSources.Registration,
        LeaseId: null);
}
