using System.Collections;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using k8s;
using k8s.Models;
using Xunit.Abstractions;

namespace Mesh.Packaging.Tests;

/// <summary>
/// deploy/helm/mesh and deploy/kubernetes/samples: the chart renders (<see cref="HelmTemplateRenderer"/>, Helm's template
/// subset the chart uses), its values validate against values.schema.json (bad values fail naming the value, as
/// <c>helm template</c> does), and every rendered manifest, CRD and sample reads as its Kubernetes API type
/// (<see cref="KubernetesManifest"/>).
/// </summary>
public sealed class HelmChartTests(ITestOutputHelper output)
{
    private static readonly string RepositoryRoot = typeof(HelmChartTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "RepositoryRoot").Value!;

    private static readonly string ChartDirectory = Path.Combine(RepositoryRoot, "deploy", "helm", "mesh");
    private static readonly string SamplesDirectory = Path.Combine(RepositoryRoot, "deploy", "kubernetes", "samples");

    /// <summary>The Istio kinds the mesh reads: CRDs, ClusterRole rules and webhook rules must name exactly these.</summary>
    private static readonly Dictionary<string, string[]> MeshKinds = new()
    {
        ["networking.istio.io"] = ["serviceentries", "workloadentries", "virtualservices", "destinationrules", "sidecars"],
        ["security.istio.io"] = ["peerauthentications", "authorizationpolicies", "requestauthentications"],
    };

    [Fact]
    public void Values_Defaults_ValidateAgainstTheSchema()
    {
        var errors = SchemaErrors(DefaultValues());

        Assert.Empty(errors);
    }

    [Theory]
    [InlineData("controlPlane: {replicas: 0}", "/controlPlane/replicas")]
    [InlineData("controlPlane: {replicas: two}", "/controlPlane/replicas")]
    [InlineData("controlPlane: {replica: 3}", "/controlPlane/replica")]
    [InlineData("controlPlane: {podAntiAffinity: always}", "/controlPlane/podAntiAffinity")]
    [InlineData("controlPlane: {trustDomain: Cluster.Local}", "/controlPlane/trustDomain")]
    [InlineData("image: {pullPolicy: Sometimes}", "/image/pullPolicy")]
    [InlineData("image: {repository: \"\"}", "/image/repository")]
    [InlineData("webhook: {failurePolicy: Maybe}", "/webhook/failurePolicy")]
    [InlineData("webhook: {timeoutSeconds: 31}", "/webhook/timeoutSeconds")]
    [InlineData("webhook: {port: 443}", "/webhook/port")]
    [InlineData("webhook: {caBundle: \"not base64!\"}", "/webhook/caBundle")]
    [InlineData("kubernetes: {tokenAudiences: []}", "/kubernetes/tokenAudiences")]
    [InlineData("kubernetes: {namespaces: [Default]}", "/kubernetes/namespaces/0")]
    [InlineData("service: {securePort: 70000}", "/service/securePort")]
    [InlineData("podDisruptionBudget: {enabled: \"yes\"}", "/podDisruptionBudget/enabled")]
    [InlineData("ca: {cacerts: {enabled: true, secretName: Bad_Name}}", "/ca/cacerts/secretName")]
    [InlineData("rbac: null", "rbac")]
    [InlineData("controlPlane: {extraEnv: [{name: \"1BAD\", value: x}]}", "/controlPlane/extraEnv/0/name")]
    public void Values_Bad_FailNamingTheValue(string badValues, string path)
    {
        var values = HelmTemplateRenderer.MergeValues(DefaultValues(), ParseValues(badValues));

        var errors = SchemaErrors(values);

        output.WriteLine($"{badValues} ->{Environment.NewLine}  {string.Join(Environment.NewLine + "  ", errors)}");
        Assert.NotEmpty(errors);
        Assert.Contains(errors, e => e.Contains(path, StringComparison.Ordinal));
    }

    [Fact]
    public void Schema_IsDraft07_AndRefusesUnknownKeysEverywhere()
    {
        using var schema = JsonDocument.Parse(File.ReadAllText(Path.Combine(ChartDirectory, "values.schema.json")));

        // Helm validates values with a draft-07 validator: the file must be a valid draft-07 schema.
        Assert.True(MetaSchemas.Draft7.Evaluate(schema.RootElement).IsValid);
        // Every object with named keys refuses other keys, so a misspelt value fails instead of being ignored.
        var open = new List<string>();
        void Walk(JsonElement node, string path)
        {
            if (node.ValueKind != JsonValueKind.Object)
            {
                return;
            }

            if (node.TryGetProperty("properties", out var properties)
                && !(node.TryGetProperty("additionalProperties", out var additional) && additional.ValueKind == JsonValueKind.False))
            {
                open.Add(path);
            }

            foreach (var child in node.EnumerateObject())
            {
                if (child.Value.ValueKind == JsonValueKind.Object)
                {
                    Walk(child.Value, $"{path}/{child.Name}");
                }
            }
        }

        Walk(schema.RootElement, "#");
        Assert.Empty(open);
    }

    [Fact]
    public void Values_EveryKey_IsDocumentedByAComment()
    {
        // A key is documented when a comment sits right above it or above a key that holds it below the top level
        // (resources: {requests: …}); a top-level section's comment does not document the keys in it.
        var lines = File.ReadAllLines(Path.Combine(ChartDirectory, "values.yaml"));
        var documented = new Dictionary<int, bool>();
        var undocumented = new List<string>();
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            if (string.IsNullOrWhiteSpace(line) || line.TrimStart().StartsWith('#'))
            {
                continue;
            }

            var indent = line.Length - line.TrimStart().Length;
            foreach (var deeper in documented.Keys.Where(k => k >= indent).ToList())
            {
                documented.Remove(deeper);
            }

            var commented = i > 0 && lines[i - 1].TrimStart().StartsWith('#');
            var parentDocumented = documented.Where(d => d.Key > 0 && d.Key < indent).Any(d => d.Value);
            if (!commented && !parentDocumented)
            {
                undocumented.Add($"values.yaml:{i + 1}: {line.Trim()}");
            }

            documented[indent] = commented;
        }

        Assert.Empty(undocumented);
    }

    [Fact]
    public void Chart_DefaultValues_RendersValidKubernetesObjects()
    {
        var manifests = RenderAndValidate(DefaultValues());

        Assert.Equal(
            ["ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount", "ValidatingWebhookConfiguration"],
            manifests.Select(m => m.Kind).Order(StringComparer.Ordinal));
        Assert.All(manifests.Where(m => m.Kind is not ("ClusterRole" or "ClusterRoleBinding" or "ValidatingWebhookConfiguration")),
            m => Assert.Equal("mesh-system", m.Namespace));

        var deployment = Single<V1Deployment>(manifests);
        var service = Single<V1Service>(manifests);
        Assert.Equal(2, deployment.Spec.Replicas);
        Assert.Equal(("0", "1"), (deployment.Spec.Strategy.RollingUpdate.MaxUnavailable.Value, deployment.Spec.Strategy.RollingUpdate.MaxSurge.Value));
        var pod = deployment.Spec.Template.Spec;
        Assert.True(pod.SecurityContext.RunAsNonRoot);
        Assert.Equal("RuntimeDefault", pod.SecurityContext.SeccompProfile.Type);
        var container = Assert.Single(pod.Containers);
        Assert.Equal("mesh-control-plane:0.1.0", container.Image);
        Assert.True(container.SecurityContext.ReadOnlyRootFilesystem);
        Assert.False(container.SecurityContext.AllowPrivilegeEscalation);
        Assert.Equal(["ALL"], container.SecurityContext.Capabilities.Drop);
        Assert.NotNull(container.Resources.Requests["cpu"]);
        Assert.NotNull(container.Resources.Limits["memory"]);

        // Probes on the admin port, the path the control plane serves (AdminEndpoints: /healthz/ready).
        var adminPort = container.Ports.Single(p => p.Name == "http-admin");
        Assert.Equal(15014, adminPort.ContainerPort);
        Assert.Equal("/healthz/ready", container.ReadinessProbe.HttpGet.Path);
        Assert.Equal("http-admin", container.ReadinessProbe.HttpGet.Port.Value);
        Assert.Equal("http-admin", container.LivenessProbe.TcpSocket.Port.Value);

        var env = container.Env.ToDictionary(e => e.Name);
        Assert.Equal("metadata.name", env["POD_NAME"].ValueFrom.FieldRef.FieldPath);
        Assert.Equal("metadata.namespace", env["POD_NAMESPACE"].ValueFrom.FieldRef.FieldPath);
        Assert.Equal("true", env["ControlPlane__Kubernetes__Enabled"].Value);
        Assert.Equal("istio-ca", env["ControlPlane__Kubernetes__TokenAudiences"].Value);
        Assert.Equal("http://0.0.0.0:15014", env["ControlPlane__AdminAddress"].Value);
        Assert.Equal("https://0.0.0.0:15012", env["ControlPlane__SecureAddress"].Value);
        Assert.Equal("https://0.0.0.0:15017", env["ControlPlane__Kubernetes__WebhookAddress"].Value);
        Assert.Equal(service.Metadata.Name, env["ControlPlane__Kubernetes__WebhookServiceName"].Value);
        Assert.DoesNotContain("ControlPlane__Kubernetes__Namespaces", env.Keys);
        Assert.DoesNotContain("ControlPlane__Ca__CaCertsDirectory", env.Keys);
        // Every ControlPlane__ key belongs to a section the control plane knows (an unknown one stops it at start).
        Assert.All(env.Keys.Where(k => k.StartsWith("ControlPlane__", StringComparison.Ordinal)), key =>
            Assert.Matches("^ControlPlane__(TrustDomain|RootNamespace|SecureAddress|AdminAddress|ConfigDirectory|StateDirectory|Kubernetes__(Enabled|TokenAudiences|Namespaces|WebhookAddress|WebhookServiceName)|Ca__CaCertsDirectory)$", key));
        // The writable paths are volumes; the root filesystem is read-only.
        Assert.Equal(["/etc/mesh/config", "/tmp", "/var/lib/mesh"], container.VolumeMounts.Select(m => m.MountPath).Order(StringComparer.Ordinal));

        var antiAffinity = Assert.Single(pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution);
        Assert.Equal("kubernetes.io/hostname", antiAffinity.PodAffinityTerm.TopologyKey);
        Assert.Equal(deployment.Spec.Selector.MatchLabels, antiAffinity.PodAffinityTerm.LabelSelector.MatchLabels);

        // The Service and the PDB select the Deployment's pods; the Service maps its ports to named container ports.
        Assert.All(deployment.Spec.Selector.MatchLabels, l => Assert.Equal(l.Value, deployment.Spec.Template.Metadata.Labels[l.Key]));
        Assert.Equal(deployment.Spec.Selector.MatchLabels, service.Spec.Selector);
        Assert.Equal(deployment.Spec.Selector.MatchLabels, Single<V1PodDisruptionBudget>(manifests).Spec.Selector.MatchLabels);
        Assert.Equal("1", Single<V1PodDisruptionBudget>(manifests).Spec.MaxUnavailable.Value);
        var containerPorts = container.Ports.ToDictionary(p => p.Name, p => p.ContainerPort);
        Assert.Equal(
            [("grpc-secure", 15012, 15012), ("http-admin", 15014, 15014), ("https-webhook", 443, 15017)],
            service.Spec.Ports.Select(p => (p.Name, p.Port, containerPorts[p.TargetPort.Value])));

        // The pod runs as the ServiceAccount the bindings name.
        var account = Single<V1ServiceAccount>(manifests);
        Assert.Equal(account.Metadata.Name, pod.ServiceAccountName);
        Assert.Equal((account.Metadata.Name, "mesh-system"), Single<V1ClusterRoleBinding>(manifests).Subjects.Select(s => (s.Name, s.NamespaceProperty)).Single());
        Assert.Equal((account.Metadata.Name, "mesh-system"), Single<V1RoleBinding>(manifests).Subjects.Select(s => (s.Name, s.NamespaceProperty)).Single());
        Assert.Equal(Single<V1ClusterRole>(manifests).Metadata.Name, Single<V1ClusterRoleBinding>(manifests).RoleRef.Name);
        Assert.Equal(Single<V1Role>(manifests).Metadata.Name, Single<V1RoleBinding>(manifests).RoleRef.Name);

        // The webhook calls this Service on 443, fails open, and covers exactly the kinds the mesh reads.
        var webhook = Assert.Single(Single<V1ValidatingWebhookConfiguration>(manifests).Webhooks);
        Assert.Equal((service.Metadata.Name, "mesh-system", "/validate", 443), (webhook.ClientConfig.Service.Name, webhook.ClientConfig.Service.NamespaceProperty, webhook.ClientConfig.Service.Path, webhook.ClientConfig.Service.Port));
        Assert.Equal("Ignore", webhook.FailurePolicy);
        Assert.Equal("None", webhook.SideEffects);
        Assert.Equal(["v1"], webhook.AdmissionReviewVersions);
        Assert.Equal(10, webhook.TimeoutSeconds);
        Assert.Null(webhook.ClientConfig.CaBundle);
        Assert.Null(webhook.NamespaceSelector);
        Assert.All(webhook.Rules, r => Assert.Equal(["CREATE", "UPDATE"], r.Operations));
        Assert.Equal(MeshKinds.OrderBy(k => k.Key).Select(k => (k.Key, string.Join(",", k.Value))),
            webhook.Rules.OrderBy(r => r.ApiGroups.Single()).Select(r => (r.ApiGroups.Single(), string.Join(",", r.Resources))));
    }

    [Fact]
    public void Manifests_ValidateAgainstTheKubernetesJsonSchemas()
    {
        // Kubernetes' own schemas (v1.30, strict), shipped with the test: see KubernetesSchemas/README.md.
        var schemas = Path.Combine(RepositoryRoot, "tests", "Mesh.Packaging.Tests", "KubernetesSchemas");
        var templates = Directory.GetFiles(Path.Combine(ChartDirectory, "templates")).ToDictionary(f => Path.GetFileName(f), File.ReadAllText);
        var renderer = new HelmTemplateRenderer(templates);
        var documents = new List<(string Source, JsonNode Document)>();
        foreach (var template in renderer.Templates.Order(StringComparer.Ordinal))
        {
            documents.AddRange(HelmTemplateRenderer.ParseYamlDocuments(renderer.Render(template, Root(DefaultValues(), "mesh-system")), template)
                .OfType<JsonNode>().Select(d => ($"templates/{template}", d)));
        }

        foreach (var file in Directory.GetFiles(Path.Combine(ChartDirectory, "crds")).Concat(Directory.GetFiles(SamplesDirectory, "*.yaml")).Order(StringComparer.Ordinal))
        {
            documents.AddRange(HelmTemplateRenderer.ParseYamlDocuments(File.ReadAllText(file), file).OfType<JsonNode>()
                .Select(d => (Path.GetRelativePath(RepositoryRoot, file), d)));
        }

        var failures = new List<string>();
        var validated = 0;
        foreach (var (source, document) in documents)
        {
            var apiVersion = document["apiVersion"]!.GetValue<string>();
            var kind = document["kind"]!.GetValue<string>();
            if (apiVersion.Contains(".istio.io/", StringComparison.Ordinal))
            {
                continue; // Istio's objects: their kinds are checked against the chart's CRDs by Samples_AreValidKubernetesObjectsWiredToTheChart.
            }

            var slash = apiVersion.IndexOf('/', StringComparison.Ordinal);
            var name = slash < 0
                ? $"{kind.ToLowerInvariant()}-{apiVersion}"
                : $"{kind.ToLowerInvariant()}-{apiVersion[..slash].Split('.')[0]}-{apiVersion[(slash + 1)..]}";
            var path = Path.Combine(schemas, name + ".json");
            Assert.True(File.Exists(path), $"{source}: no schema {name}.json shipped for {apiVersion} {kind}; add it to KubernetesSchemas (see its README)");
            var schema = KubernetesSchema(path);
            using var json = JsonDocument.Parse(document.ToJsonString());
            var result = schema.Evaluate(json.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
            validated++;
            output.WriteLine($"{source}: {apiVersion} {kind} {document["metadata"]?["name"]}: {(result.IsValid ? "valid" : "INVALID")} against {name}.json");
            if (!result.IsValid)
            {
                failures.AddRange((result.Details ?? []).Where(d => d.Errors is { Count: > 0 })
                    .SelectMany(d => d.Errors!.Select(e => $"{source}: {kind} {document["metadata"]?["name"]}: {d.InstanceLocation}: {e.Value}")));
            }
        }

        Assert.True(validated >= 20, $"only {validated} objects validated");
        Assert.True(failures.Count == 0, string.Join(Environment.NewLine, failures));
    }

    [Fact]
    public void Manifests_SchemaValidation_CatchesAMisplacedField()
    {
        var schema = KubernetesSchema(Path.Combine(RepositoryRoot, "tests", "Mesh.Packaging.Tests", "KubernetesSchemas", "service-v1.json"));
        using var good = JsonDocument.Parse("""{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"port":80,"targetPort":"http"}]}}""");
        using var misplaced = JsonDocument.Parse("""{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"port":80}}""");
        using var wrongType = JsonDocument.Parse("""{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"port":"eighty"}]}}""");
        var options = new EvaluationOptions();

        Assert.True(schema.Evaluate(good.RootElement, options).IsValid);
        Assert.False(schema.Evaluate(misplaced.RootElement, options).IsValid);
        Assert.False(schema.Evaluate(wrongType.RootElement, options).IsValid);
    }

    [Fact]
    public void Chart_Rbac_IsLeastPrivilege()
    {
        var manifests = RenderAndValidate(DefaultValues());

        // Cluster-wide: read (get/list/watch) only, plus create on tokenreviews; no wildcard, no Secrets, no writes.
        var clusterRules = Single<V1ClusterRole>(manifests).Rules
            .SelectMany(r => r.ApiGroups.SelectMany(g => r.Resources.Select(res => ($"{g}/{res}", string.Join(",", r.Verbs), r.ResourceNames is null))))
            .ToList();
        var expected = new List<(string, string, bool)>
        {
            ("/services", "get,list,watch", true), ("/pods", "get,list,watch", true), ("/nodes", "get,list,watch", true),
            ("discovery.k8s.io/endpointslices", "get,list,watch", true),
            ("authentication.k8s.io/tokenreviews", "create", true),
        };
        expected.AddRange(MeshKinds.SelectMany(k => k.Value.Select(res => ($"{k.Key}/{res}", "get,list,watch", true))));
        Assert.Equal(expected.Order(), clusterRules.Order());

        // In its namespace: Leases get/create/update; Secrets get only by the two names, create (RBAC cannot limit create
        // by name); never list, watch, update or delete of Secrets.
        var role = Single<V1Role>(manifests);
        var leases = Assert.Single(role.Rules, r => r.Resources.Contains("leases"));
        Assert.Equal(["coordination.k8s.io"], leases.ApiGroups);
        Assert.Equal(["get", "create", "update"], leases.Verbs);
        var secrets = role.Rules.Where(r => r.Resources.Contains("secrets")).ToList();
        Assert.Equal(2, secrets.Count);
        Assert.Equal(["get"], secrets[0].Verbs);
        Assert.Equal(["mesh-ca", "cacerts"], secrets[0].ResourceNames);
        Assert.Equal(["create"], secrets[1].Verbs);
        Assert.Equal(3, role.Rules.Count);
        Assert.DoesNotContain(role.Rules.Concat(Single<V1ClusterRole>(manifests).Rules), r => r.Verbs.Contains("*") || r.Resources.Contains("*") || r.ApiGroups.Contains("*"));
    }

    [Fact]
    public void Chart_EveryOptionOn_RendersValidKubernetesObjects()
    {
        var values = HelmTemplateRenderer.MergeValues(DefaultValues(), ParseValues("""
            image: {repository: registry.example/mesh/control-plane, tag: "1.2.3", pullPolicy: Always}
            imagePullSecrets: [{name: registry}]
            controlPlane:
              replicas: 3
              trustDomain: example.org
              podAntiAffinity: hard
              extraEnv: [{name: ControlPlane__LeaseTtl, value: "00:00:15"}]
              nodeSelector: {kubernetes.io/os: linux}
              tolerations: [{key: dedicated, operator: Equal, value: mesh, effect: NoSchedule}]
              topologySpreadConstraints:
                - maxSkew: 1
                  topologyKey: topology.kubernetes.io/zone
                  whenUnsatisfiable: ScheduleAnyway
                  labelSelector: {matchLabels: {app.kubernetes.io/name: mesh-control-plane}}
              podAnnotations: {prometheus.io/scrape: "true"}
            kubernetes: {namespaces: [shop, payments], tokenAudiences: [istio-ca, mesh]}
            ca: {cacerts: {enabled: true, secretName: my-cacerts}}
            webhook: {failurePolicy: Fail, timeoutSeconds: 5, caBundle: "TUVTSCBST09UIENB", annotations: {cert-manager.io/inject-ca-from: mesh-system/webhook}}
            """));
        Assert.Empty(SchemaErrors(values));

        var manifests = RenderAndValidate(values, "shop-mesh");

        var deployment = Single<V1Deployment>(manifests);
        Assert.Equal(3, deployment.Spec.Replicas);
        Assert.Equal("1", deployment.Spec.Strategy.RollingUpdate.MaxUnavailable.Value);
        var pod = deployment.Spec.Template.Spec;
        var container = Assert.Single(pod.Containers);
        Assert.Equal("registry.example/mesh/control-plane:1.2.3", container.Image);
        Assert.Equal("Always", container.ImagePullPolicy);
        Assert.Equal("registry", Assert.Single(pod.ImagePullSecrets).Name);
        Assert.Equal("true", deployment.Spec.Template.Metadata.Annotations["prometheus.io/scrape"]);
        Assert.Equal("linux", pod.NodeSelector["kubernetes.io/os"]);
        Assert.Equal("NoSchedule", Assert.Single(pod.Tolerations).Effect);
        Assert.Equal("topology.kubernetes.io/zone", Assert.Single(pod.TopologySpreadConstraints).TopologyKey);
        Assert.Null(pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution);
        Assert.Equal("kubernetes.io/hostname", Assert.Single(pod.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution).TopologyKey);
        var env = container.Env.ToDictionary(e => e.Name, e => e.Value);
        Assert.Equal("shop,payments", env["ControlPlane__Kubernetes__Namespaces"]);
        Assert.Equal("istio-ca,mesh", env["ControlPlane__Kubernetes__TokenAudiences"]);
        Assert.Equal("example.org", env["ControlPlane__TrustDomain"]);
        Assert.Equal("00:00:15", env["ControlPlane__LeaseTtl"]);
        Assert.Equal("/etc/cacerts", env["ControlPlane__Ca__CaCertsDirectory"]);
        Assert.Equal("/etc/cacerts", container.VolumeMounts.Single(m => m.Name == "cacerts").MountPath);
        Assert.True(container.VolumeMounts.Single(m => m.Name == "cacerts").ReadOnlyProperty);
        Assert.Equal("my-cacerts", pod.Volumes.Single(v => v.Name == "cacerts").Secret.SecretName);
        Assert.Equal(["mesh-ca", "my-cacerts"], Single<V1Role>(manifests).Rules.Single(r => r.ResourceNames is not null).ResourceNames);
        Assert.All(manifests.Where(m => m.Namespace is not null), m => Assert.Equal("shop-mesh", m.Namespace));

        var configuration = Single<V1ValidatingWebhookConfiguration>(manifests);
        Assert.Equal("mesh-system/webhook", configuration.Metadata.Annotations["cert-manager.io/inject-ca-from"]);
        var webhook = Assert.Single(configuration.Webhooks);
        Assert.Equal("Fail", webhook.FailurePolicy);
        Assert.Equal(5, webhook.TimeoutSeconds);
        Assert.Equal("MESH ROOT CA", System.Text.Encoding.ASCII.GetString(webhook.ClientConfig.CaBundle));
        Assert.Equal("shop-mesh", webhook.ClientConfig.Service.NamespaceProperty);
        var selector = Assert.Single(webhook.NamespaceSelector.MatchExpressions);
        Assert.Equal(("kubernetes.io/metadata.name", "In", "shop,payments"), (selector.Key, selector.OperatorProperty, string.Join(",", selector.Values)));
    }

    [Fact]
    public void Chart_OptionalPartsOff_LeavesThemOut()
    {
        var values = HelmTemplateRenderer.MergeValues(DefaultValues(), ParseValues("""
            webhook: {enabled: false}
            rbac: {create: false}
            serviceAccount: {create: false, name: my-account}
            podDisruptionBudget: {enabled: false}
            controlPlane: {podAntiAffinity: none, replicas: 1}
            """));
        Assert.Empty(SchemaErrors(values));

        var manifests = RenderAndValidate(values);

        Assert.Equal(["Deployment", "Service"], manifests.Select(m => m.Kind).Order(StringComparer.Ordinal));
        var container = Single<V1Deployment>(manifests).Spec.Template.Spec.Containers.Single();
        Assert.DoesNotContain(container.Env, e => e.Name.StartsWith("ControlPlane__Kubernetes__Webhook", StringComparison.Ordinal));
        Assert.DoesNotContain(container.Ports, p => p.Name == "https-webhook");
        Assert.DoesNotContain(Single<V1Service>(manifests).Spec.Ports, p => p.Name == "https-webhook");
        Assert.Equal("my-account", Single<V1Deployment>(manifests).Spec.Template.Spec.ServiceAccountName);
        Assert.Null(Single<V1Deployment>(manifests).Spec.Template.Spec.Affinity);
    }

    [Fact]
    public void Crds_AreIstiosKindsWithIstiosVersions()
    {
        var crds = Directory.GetFiles(Path.Combine(ChartDirectory, "crds"))
            .SelectMany(file => KubernetesManifest.Read(File.ReadAllText(file), Path.GetRelativePath(RepositoryRoot, file)))
            .ToList();
        Print("crds/", crds);

        Assert.All(crds, c => Assert.Equal("CustomResourceDefinition", c.Kind));
        var definitions = crds.Select(c => (V1CustomResourceDefinition)c.Object).ToList();
        Assert.Equal(
            MeshKinds.SelectMany(k => k.Value.Select(plural => $"{plural}.{k.Key}")).Order(StringComparer.Ordinal),
            definitions.Select(d => d.Metadata.Name).Order(StringComparer.Ordinal));
        foreach (var crd in definitions)
        {
            Assert.Equal($"{crd.Spec.Names.Plural}.{crd.Spec.Group}", crd.Metadata.Name);
            Assert.Equal("Namespaced", crd.Spec.Scope);
            Assert.Equal(crd.Spec.Names.Kind + "List", crd.Spec.Names.ListKind);
            Assert.Contains("istio-io", crd.Spec.Names.Categories);
            // Istio's served versions (manifests/charts/base/files/crd-all.gen.yaml), storage v1: the same as Istio's,
            // so either installation can own them later without a storage migration.
            var versions = crd.Spec.Group == "networking.istio.io" ? new[] { "v1", "v1alpha3", "v1beta1" } : ["v1", "v1beta1"];
            Assert.Equal(versions, crd.Spec.Versions.Select(v => v.Name));
            Assert.All(crd.Spec.Versions, v => Assert.True(v.Served));
            Assert.Equal("v1", crd.Spec.Versions.Single(v => v.Storage == true).Name);
            Assert.All(crd.Spec.Versions, v => Assert.True(v.Schema.OpenAPIV3Schema.Properties["spec"].XKubernetesPreserveUnknownFields));
        }
    }

    [Fact]
    public void Samples_AreValidKubernetesObjectsWiredToTheChart()
    {
        var crdKinds = Directory.GetFiles(Path.Combine(ChartDirectory, "crds"))
            .SelectMany(file => KubernetesManifest.Read(File.ReadAllText(file), file))
            .Select(c => (V1CustomResourceDefinition)c.Object)
            .SelectMany(d => d.Spec.Versions.Select(v => $"{d.Spec.Group}/{v.Name}/{d.Spec.Names.Kind}"))
            .ToHashSet();
        var chart = RenderAndValidate(DefaultValues());
        var service = Single<V1Service>(chart);
        var controlPlaneAddress = $"https://{service.Metadata.Name}.{service.Metadata.NamespaceProperty}.svc:{service.Spec.Ports.Single(p => p.Name == "grpc-secure").Port}";
        var audiences = DefaultValues()["kubernetes"]!["tokenAudiences"]!.AsArray().Select(a => a!.GetValue<string>()).ToList();

        var samples = Directory.GetFiles(SamplesDirectory, "*.yaml").Order(StringComparer.Ordinal)
            .SelectMany(file => KubernetesManifest.Read(File.ReadAllText(file), Path.GetRelativePath(RepositoryRoot, file), crdKinds))
            .ToList();
        Print("deploy/kubernetes/samples/", samples);

        var deployments = samples.Select(s => s.Object).OfType<V1Deployment>().ToList();
        Assert.Equal(["frontend", "inventory", "orders-v1", "orders-v2", "ratings"], deployments.Select(d => d.Metadata.Name).Order(StringComparer.Ordinal));
        var meshContainers = 0;
        foreach (var deployment in deployments)
        {
            var pod = deployment.Spec.Template.Spec;
            Assert.Contains(samples, s => s.Object is V1ServiceAccount account && account.Metadata.Name == pod.ServiceAccountName);
            Assert.Contains(samples, s => s.Object is V1Service svc && svc.Spec.Selector.All(l => deployment.Spec.Template.Metadata.Labels.TryGetValue(l.Key, out var v) && v == l.Value));
            foreach (var container in pod.Containers.Where(c => c.Env?.Any(e => e.Name.StartsWith("Mesh__", StringComparison.Ordinal)) == true))
            {
                meshContainers++;
                var env = container.Env.ToDictionary(e => e.Name);
                Assert.Equal(controlPlaneAddress, env["Mesh__ControlPlane__Address"].Value);
                Assert.Equal("spec.serviceAccountName", env["Mesh__ServiceAccount"].ValueFrom.FieldRef.FieldPath);

                // Not registering (its Pod is in its Service's EndpointSlice), a workload asks for its inbound policy by the
                // Pod IP: without it, it would ask by 127.0.0.1 and its ports would never get their AuthorizationPolicy.
                Assert.Equal("false", env["Mesh__Registration__Enabled"].Value);
                Assert.Equal("status.podIP", env["Mesh__Registration__Address"].ValueFrom.FieldRef.FieldPath);

                // The token file is the projected ServiceAccount token with the audience the control plane checks,
                // mounted as a directory (a subPath mount never sees the kubelet's rotation).
                var tokenFile = env["Mesh__Identity__TokenFile"].Value;
                var mount = container.VolumeMounts.Single(m => tokenFile.StartsWith(m.MountPath + "/", StringComparison.Ordinal));
                Assert.Null(mount.SubPath);
                var projection = Assert.Single(pod.Volumes.Single(v => v.Name == mount.Name).Projected.Sources).ServiceAccountToken;
                Assert.Equal(tokenFile, $"{mount.MountPath}/{projection.Path}");
                Assert.Contains(projection.Audience, audiences);
                Assert.InRange(projection.ExpirationSeconds ?? 3600, 600, 86400);

                var rootFile = env["Mesh__ControlPlane__RootCertificate"].Value;
                var rootMount = container.VolumeMounts.Single(m => rootFile.StartsWith(m.MountPath + "/", StringComparison.Ordinal));
                Assert.Equal("mesh-root-cert", pod.Volumes.Single(v => v.Name == rootMount.Name).ConfigMap.Name);
            }
        }

        Assert.Equal(5, meshContainers);
        var ratings = deployments.Single(d => d.Metadata.Name == "ratings").Spec.Template.Spec;
        Assert.Equal(["ratings", "mesh-sidecar"], ratings.Containers.Select(c => c.Name));
        Assert.Equal(["--app-port", "8081", "--app-ready-path", "/healthz"], ratings.Containers[1].Args);
        Assert.Equal("/healthz/ready", ratings.Containers[1].ReadinessProbe.HttpGet.Path);
        Assert.Contains(samples, s => s.Kind == "VirtualService");
        Assert.Contains(samples, s => s.Kind == "AuthorizationPolicy");
    }

    [Theory]
    [InlineData("{{ range .Values.x }}a{{ end }}", "range")]
    [InlineData("{{ .Values.x | upper }}", "upper")]
    [InlineData("{{ if .Values.x }}a{{ else if .Values.y }}b{{ end }}", "else if")]
    [InlineData("{{ $x := .Values.x }}", "variables")]
    [InlineData("{{ include \"a\" (dict) }}", "parentheses")]
    [InlineData("{{ .Capabilities.KubeVersion }}", ".Capabilities")]
    [InlineData("{{ if .Values.x }}a", "without 'end'")]
    public void Renderer_UnsupportedConstruct_FailsNamingIt(string template, string construct)
    {
        var error = Assert.ThrowsAny<Exception>(() =>
            new HelmTemplateRenderer(new Dictionary<string, string> { ["t.yaml"] = template }).Render("t.yaml", Root(new JsonObject { ["x"] = true }, "ns")));

        Assert.True(error is NotSupportedException, error.ToString());
        Assert.Contains(construct, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Renderer_Subset_RendersAsHelmDoes()
    {
        var renderer = new HelmTemplateRenderer(new Dictionary<string, string>
        {
            ["_h.tpl"] = "{{/* c */}}\n{{- define \"l\" -}}\na: {{ .Release.Name }}\nb: x\n{{- end }}\n",
            ["t.yaml"] = "m:\n  {{- include \"l\" . | nindent 2 }}\n{{- if .Values.on }}\nq: {{ .Values.s | quote }}\n{{- else }}\nq: none\n{{- end }}\n"
                + "d: {{ .Values.empty | default \"z\" }}\nj: {{ join \",\" .Values.list }}\ne: {{ if eq .Values.s \"a\\\"b\" }}matched{{ end }}\ny:\n  {{- toYaml .Values.map | nindent 2 }}\n",
        });
        var values = ParseValues("on: true\ns: 'a\"b'\nempty: ''\nlist: [p, q]\nmap: {k: [1, {n: \"true\"}], e: {}}");

        var text = renderer.Render("t.yaml", Root(values, "ns"));

        Assert.Equal("m:\n  a: release\n  b: x\nq: \"a\\\"b\"\nd: z\nj: p,q\ne: matched\ny:\n  \"k\":\n    - 1\n    -\n      \"n\": \"true\"\n  \"e\": {}\n", text);
        var parsed = HelmTemplateRenderer.ParseYamlDocuments(text, "t.yaml").Single();
        Assert.True(
            JsonNode.DeepEquals(JsonNode.Parse("""{"m":{"a":"release","b":"x"},"q":"a\"b","d":"z","j":"p,q","e":"matched","y":{"k":[1,{"n":"true"}],"e":{}}}"""), parsed),
            parsed!.ToJsonString());
        values["on"] = false;
        Assert.Contains("q: none", renderer.Render("t.yaml", Root(values, "ns")), StringComparison.Ordinal);
    }

    // ---- helpers ----

    private List<KubernetesManifest> RenderAndValidate(JsonObject values, string @namespace = "mesh-system")
    {
        var templates = Directory.GetFiles(Path.Combine(ChartDirectory, "templates"))
            .ToDictionary(f => Path.GetFileName(f), File.ReadAllText);
        var renderer = new HelmTemplateRenderer(templates);
        var manifests = new List<KubernetesManifest>();
        foreach (var template in renderer.Templates.Order(StringComparer.Ordinal))
        {
            var text = renderer.Render(template, Root(values, @namespace));
            output.WriteLine($"# Source: mesh/templates/{template}");
            output.WriteLine(text.Trim());
            manifests.AddRange(KubernetesManifest.Read(text, $"templates/{template}"));
        }

        Print("templates/", manifests);
        return manifests;
    }

    private void Print(string source, List<KubernetesManifest> manifests)
    {
        output.WriteLine($"validated {manifests.Count} objects from {source}:");
        foreach (var manifest in manifests)
        {
            output.WriteLine($"  {manifest.ApiVersion} {manifest.Kind} {(manifest.Namespace is null ? "" : manifest.Namespace + "/")}{manifest.Name} ({manifest.Source}): {manifest.Checked}");
        }
    }

    /// <summary>
    /// A shipped Kubernetes schema as JSON Schema draft 7: openapi2jsonschema writes the unversioned
    /// <c>http://json-schema.org/schema#</c> and keeps Kubernetes' <c>x-kubernetes-*</c> annotations (list and map merge
    /// hints for server-side apply, no validation rule), which draft 7 does not know; they are left out.
    /// </summary>
    private static JsonSchema KubernetesSchema(string path)
    {
        var schema = JsonNode.Parse(File.ReadAllText(path))!;
        static void Strip(JsonNode? node)
        {
            if (node is JsonObject item)
            {
                foreach (var key in item.Select(p => p.Key).Where(k => k.StartsWith("x-kubernetes-", StringComparison.Ordinal)).ToList())
                {
                    item.Remove(key);
                }

                foreach (var (_, child) in item)
                {
                    Strip(child);
                }
            }
            else if (node is JsonArray list)
            {
                foreach (var child in list)
                {
                    Strip(child);
                }
            }
        }

        Strip(schema);
        schema["$schema"] = "http://json-schema.org/draft-07/schema#";
        return JsonSchema.FromText(schema.ToJsonString());
    }

    private static T Single<T>(List<KubernetesManifest> manifests) => manifests.Select(m => m.Object).OfType<T>().Single();

    private static JsonObject Root(JsonObject values, string @namespace) => new()
    {
        ["Values"] = values.DeepClone(),
        ["Release"] = new JsonObject { ["Name"] = "release", ["Namespace"] = @namespace, ["Service"] = "Helm" },
        ["Chart"] = ChartMetadata(),
    };

    private static JsonObject ChartMetadata()
    {
        var chart = (JsonObject)HelmTemplateRenderer.ParseYamlDocuments(File.ReadAllText(Path.Combine(ChartDirectory, "Chart.yaml")), "Chart.yaml").Single()!;
        Assert.Equal("v2", chart["apiVersion"]!.GetValue<string>());
        return new JsonObject { ["Name"] = chart["name"]!.GetValue<string>(), ["Version"] = chart["version"]!.GetValue<string>(), ["AppVersion"] = chart["appVersion"]!.GetValue<string>() };
    }

    private static JsonObject DefaultValues() =>
        (JsonObject)HelmTemplateRenderer.ParseYamlDocuments(File.ReadAllText(Path.Combine(ChartDirectory, "values.yaml")), "values.yaml").Single()!;

    private static JsonObject ParseValues(string yaml) => (JsonObject)HelmTemplateRenderer.ParseYamlDocuments(yaml, "values").Single()!;

    /// <summary>Helm's check of the merged values against values.schema.json: each error as "/path: what".</summary>
    private static List<string> SchemaErrors(JsonObject values)
    {
        var schema = JsonSchema.FromText(File.ReadAllText(Path.Combine(ChartDirectory, "values.schema.json")));
        using var document = JsonDocument.Parse(values.ToJsonString());
        var result = schema.Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
        var errors = (result.Details ?? [])
            .Where(d => d.Errors is { Count: > 0 })
            .SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Key}: {e.Value}"))
            .ToList();
        Assert.Equal(result.IsValid, errors.Count == 0);
        return errors;
    }
}

/// <summary>
/// One Kubernetes object read from YAML as its API type from KubernetesClient (generated from Kubernetes' OpenAPI spec):
/// strict, so an unknown field (a misspelt or misplaced key), a wrong type or a bad value for an int-or-string fails with
/// the line. The generated types do not carry the spec's <c>required</c> lists, so <see cref="Required"/> restates them
/// (Kubernetes API reference) for the types the chart and samples use, and each object is checked against them.
/// </summary>
internal sealed record KubernetesManifest(string ApiVersion, string Kind, string Name, string? Namespace, object Object, string Source, string Checked)
{
    private static readonly Dictionary<string, Type> Types = new()
    {
        ["v1/ServiceAccount"] = typeof(V1ServiceAccount),
        ["v1/Service"] = typeof(V1Service),
        ["v1/ConfigMap"] = typeof(V1ConfigMap),
        ["apps/v1/Deployment"] = typeof(V1Deployment),
        ["policy/v1/PodDisruptionBudget"] = typeof(V1PodDisruptionBudget),
        ["rbac.authorization.k8s.io/v1/ClusterRole"] = typeof(V1ClusterRole),
        ["rbac.authorization.k8s.io/v1/ClusterRoleBinding"] = typeof(V1ClusterRoleBinding),
        ["rbac.authorization.k8s.io/v1/Role"] = typeof(V1Role),
        ["rbac.authorization.k8s.io/v1/RoleBinding"] = typeof(V1RoleBinding),
        ["admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration"] = typeof(V1ValidatingWebhookConfiguration),
        ["apiextensions.k8s.io/v1/CustomResourceDefinition"] = typeof(V1CustomResourceDefinition),
    };

    /// <summary>The <c>required</c> properties of the OpenAPI definitions these objects use (C# property names).</summary>
    private static readonly Dictionary<Type, string[]> Required = new()
    {
        [typeof(V1PodSpec)] = ["Containers"],
        [typeof(V1Container)] = ["Name"],
        [typeof(V1ContainerPort)] = ["ContainerPort"],
        [typeof(V1EnvVar)] = ["Name"],
        [typeof(V1ObjectFieldSelector)] = ["FieldPath"],
        [typeof(V1VolumeMount)] = ["Name", "MountPath"],
        [typeof(V1Volume)] = ["Name"],
        [typeof(V1HTTPGetAction)] = ["Port"],
        [typeof(V1TCPSocketAction)] = ["Port"],
        [typeof(V1ServiceAccountTokenProjection)] = ["Path"],
        [typeof(V1KeyToPath)] = ["Key", "Path"],
        [typeof(V1SeccompProfile)] = ["Type"],
        [typeof(V1DeploymentSpec)] = ["Selector", "Template"],
        [typeof(V1ServicePort)] = ["Port"],
        [typeof(V1PolicyRule)] = ["Verbs"],
        [typeof(V1RoleRef)] = ["ApiGroup", "Kind", "Name"],
        [typeof(Rbacv1Subject)] = ["Kind", "Name"],
        [typeof(V1ValidatingWebhook)] = ["Name", "ClientConfig", "SideEffects", "AdmissionReviewVersions"],
        [typeof(Admissionregistrationv1ServiceReference)] = ["Name", "NamespaceProperty"],
        [typeof(V1LabelSelectorRequirement)] = ["Key", "OperatorProperty"],
        [typeof(V1WeightedPodAffinityTerm)] = ["PodAffinityTerm", "Weight"],
        [typeof(V1PodAffinityTerm)] = ["TopologyKey"],
        [typeof(V1TopologySpreadConstraint)] = ["MaxSkew", "TopologyKey", "WhenUnsatisfiable"],
        [typeof(V1CustomResourceDefinitionSpec)] = ["Group", "Names", "Scope", "Versions"],
        [typeof(V1CustomResourceDefinitionNames)] = ["Kind", "Plural"],
        [typeof(V1CustomResourceDefinitionVersion)] = ["Name", "Served", "Storage"],
    };

    public static List<KubernetesManifest> Read(string yaml, string source, IReadOnlySet<string>? customKinds = null)
    {
        var manifests = new List<KubernetesManifest>();
        var documents = yaml.Split(["\n---\n", "\n---\r\n"], StringSplitOptions.None);
        foreach (var document in documents)
        {
            // Typed values as Kubernetes reads them (an unquoted yes/no or 0-prefixed number fails here).
            var json = HelmTemplateRenderer.ParseYamlDocuments(document, source).SingleOrDefault();
            if (json is null)
            {
                continue; // a document of comments only, or a template switched off, as Helm drops it
            }

            var apiVersion = json["apiVersion"]?.GetValue<string>() ?? throw new InvalidOperationException($"{source}: an object without apiVersion");
            var kind = json["kind"]?.GetValue<string>() ?? throw new InvalidOperationException($"{source}: an object without kind");
            var metadata = json["metadata"] as JsonObject ?? throw new InvalidOperationException($"{source}: {kind} without metadata");
            var name = metadata["name"]?.GetValue<string>() ?? throw new InvalidOperationException($"{source}: {kind} without metadata.name");
            var @namespace = metadata["namespace"]?.GetValue<string>();
            var where = $"{source}: {kind} {name}";
            if (!Types.TryGetValue($"{apiVersion}/{kind}", out var type))
            {
                // An Istio object: its kind and version must be served by the chart's CRDs; its spec is the mesh's to validate.
                if (customKinds?.Contains($"{apiVersion}/{kind}") != true)
                {
                    throw new InvalidOperationException($"{where}: {apiVersion} {kind} is neither a kind this test knows nor one the chart's CRDs serve");
                }

                Assert.IsType<JsonObject>(json["spec"]);
                manifests.Add(new KubernetesManifest(apiVersion, kind, name, @namespace, json, source, "served by the chart's CRDs"));
                continue;
            }

            object typed;
            try
            {
                typed = KubernetesYaml.LoadAllFromString(document, new Dictionary<string, Type> { [$"{apiVersion}/{kind}"] = type }, strict: true).Single();
            }
            catch (Exception e) when (e is YamlDotNet.Core.YamlException or InvalidOperationException or FormatException)
            {
                var line = e is YamlDotNet.Core.YamlException yamlError ? $" (line {yamlError.Start.Line} of the object)" : "";
                throw new InvalidOperationException($"{where} is not a valid {type.Name}{line}: {e.Message} {e.InnerException?.Message}", e);
            }

            var missing = new List<string>();
            CheckRequired(typed, kind, missing);
            if (missing.Count > 0)
            {
                throw new InvalidOperationException($"{where} lacks required fields: {string.Join(", ", missing)}");
            }

            manifests.Add(new KubernetesManifest(apiVersion, kind, name, @namespace, typed, source, $"valid {type.Name} (strict fields, required fields)"));
        }

        return manifests;
    }

    private static void CheckRequired(object value, string path, List<string> missing)
    {
        var type = value.GetType();
        if (type.Namespace != "k8s.Models")
        {
            return;
        }

        var required = Required.GetValueOrDefault(type, []);
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.GetIndexParameters().Length > 0)
            {
                continue;
            }

            var child = property.GetValue(value);
            var childPath = $"{path}.{property.Name}";
            if (required.Contains(property.Name) && (child is null or string { Length: 0 } or ICollection { Count: 0 } or 0))
            {
                missing.Add(childPath);
            }

            switch (child)
            {
                case null or string or IDictionary:
                    break;
                case IEnumerable items:
                    var index = 0;
                    foreach (var item in items)
                    {
                        if (item is not null)
                        {
                            CheckRequired(item, $"{childPath}[{index}]", missing);
                        }

                        index++;
                    }

                    break;
                default:
                    CheckRequired(child, childPath, missing);
                    break;
            }
        }
    }
}
